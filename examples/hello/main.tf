# A placeholder configuration: the hello example only lists the workspace.
terraform {}
