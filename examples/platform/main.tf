# The platform example: one resource of Terraform's own (no provider to download), so a tracked
# run has a plan to confirm and an apply to watch, on any machine.
resource "terraform_data" "greeting" {
  input = "hello from a berth worker"
}

output "greeting" {
  value = terraform_data.greeting.output
}
