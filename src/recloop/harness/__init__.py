"""Test and demo harness: AWS's moving parts played on loopback (not part of the product).

`recloop demo --aws` runs the product's own code (the Lambda handlers, the training container's
entrypoint, `recloop serve`) against AWS APIs served by moto on 127.0.0.1. What AWS itself
would do around that code (invoke a function per Kinesis batch, deliver EventBridge events,
run a training job's container) is played here, by the modules of this package:

    aws        the moto server, the account's resources, clients with the endpoint URL
    terraform  each function's and task's environment, as Terraform sets it
    functions  a Lambda function as a long-lived process (a warm container)
    kinesis    the Kinesis event source mapping (batches, batchItemFailures, retries)
    sagemaker  the training job runner (SageMaker's container conventions)
    site       the demo's AWS site: all of the above wired together
"""
