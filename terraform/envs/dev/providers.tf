# Providers are configured here and only here; modules receive them.

provider "aws" {
  region = var.region

  default_tags {
    tags = local.tags
  }
}

# CloudFront's WAF web ACL must be created in us-east-1.
provider "aws" {
  alias  = "us_east_1"
  region = "us-east-1"

  default_tags {
    tags = local.tags
  }
}

# Elastic Cloud: the API key comes from the EC_API_KEY environment variable (a masked CI
# variable), never from the code.
provider "ec" {}
