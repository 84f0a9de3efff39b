terraform {
  required_version = ">= 1.10.0, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 6.0"
    }
    ec = {
      source  = "elastic/ec"
      version = "~> 0.12"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # State lives in a versioned, encrypted S3 bucket made once by hand (docs/deploy.md);
  # bucket and region come from -backend-config, so one account's names are not in the code.
  backend "s3" {
    key          = "recloop/dev.tfstate"
    encrypt      = true
    use_lockfile = true
  }
}
