# shellcheck shell=bash
# Source me: `. scripts/env.sh`. Points lxc, Pulumi and the repo's tools at the
# checkout-local sandbox so nothing touches the user's own ~/.config/lxc or
# ~/.pulumi. Works from any directory and from a clone at any path.

_env_sh_src="${BASH_SOURCE[0]:-$0}"
ROOT="$(cd "$(dirname "$_env_sh_src")/.." && pwd -P)"
unset _env_sh_src

SANDBOX="$ROOT/.sandbox"
LXD_CONF="$SANDBOX/lxc"
case ":$PATH:" in
  *":$ROOT/.tools/bin:"*) ;;
  *) PATH="$ROOT/.tools/bin:$PATH" ;;
esac
PULUMI_HOME="$SANDBOX/pulumi-home"
PULUMI_BACKEND_URL="file://$SANDBOX/pulumi-state"
mkdir -p "$SANDBOX/pulumi-state"
# A fixed passphrase only for the throwaway local backend; a caller's own wins.
: "${PULUMI_CONFIG_PASSPHRASE=lxd-placement-sandbox}"
PULUMI_SKIP_UPDATE_CHECK=true
PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
# The placement policy pack, as `pulumi preview --policy-pack` runs it (policy/run).
LXD_PLACEMENT_POLICY_PACK="$ROOT/policy/run"

export ROOT SANDBOX LXD_CONF PATH PULUMI_HOME PULUMI_BACKEND_URL \
  PULUMI_CONFIG_PASSPHRASE PULUMI_SKIP_UPDATE_CHECK \
  PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION LXD_PLACEMENT_POLICY_PACK
