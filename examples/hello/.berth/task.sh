# The task berth runs when no command follows `--` (see docs/usage.md).
echo "Hello from berth: running as $(id -u):$(id -g) in $PWD"
echo "Workspace files:"
ls -l
echo "Tools in the standard runner image:"
for tool in bash curl git jq ssh unzip; do
  printf '  %-5s %s\n' "$tool" "$(command -v "$tool" || echo missing)"
done
