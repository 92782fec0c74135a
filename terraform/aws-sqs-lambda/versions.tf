terraform {
  # 1.9: variable validations may refer to other variables (visibility vs function timeout).
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 5.83: metrics_config on the event source mapping.
      version = ">= 5.83, < 7.0"
    }
  }
}
