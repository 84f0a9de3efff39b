"""SageMaker training container entrypoint: SageMaker's conventions in, recloop.training out.

SageMaker runs the image as `train`; training/train calls this. Everything else (reading
hyperparameters.json, the train channel, writing the bundle to SM_MODEL_DIR, registering and
gating) lives in recloop.training.sagemaker, so `recloop train --backend local` runs the very
same code in-process.
"""

from __future__ import annotations

import sys

from recloop.training.sagemaker import main

if __name__ == "__main__":
    sys.exit(main())
