variable "name" {
  description = "Name prefix for every resource, e.g. recloop-prod."
  type        = string
}

variable "alarm_email" {
  description = "E-mail address subscribed to the on-call alarm topic (the subscription must be confirmed from the inbox)."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}
