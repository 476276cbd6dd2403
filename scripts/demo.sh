#!/usr/bin/env bash
# The demo (`npm run demo`, after `npm ci` on a fresh machine): a container is created on one
# LXD server by `pulumi up`, a file is written inside it, its placement is changed in stack
# config, `pulumi preview` shows the move plan, `pulumi up` moves it to the other server, and
# the file is still there. Then everything the demo made is destroyed; the sandbox stays up.
#
# It runs examples/quickstart as a user would (the `pulumi` CLI, a stack named `demo` in the
# checkout's local file backend, .sandbox/pulumi-state) against the sandbox of scripts/sandbox.sh.
# Re-running it is safe: a demo stack left by an earlier run is destroyed first.
set -Eeuo pipefail
trap 'echo "demo: failed at line $LINENO: \"$BASH_COMMAND\"; run it again to start over (what an earlier run left is cleaned up first)" >&2' ERR

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
EXAMPLE="$ROOT/examples/quickstart"
STACK=demo
NAME=web            # the LXD name examples/quickstart gives its instance (config `name`)
FROM=s1
TO=s2

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
# Print a command as one would type it, then run it.
show() {
  local a line='$'
  for a in "$@"; do
    if [[ $a =~ [[:space:]\<\>\|\;\&\$\'] ]]; then line+=" '${a//\'/\'\\\'\'}'"; else line+=" $a"; fi
  done
  printf '%s\n' "$line"
  "$@"
}

# Hold the sandbox lock shared, as the tests and the benchmark do: a fault suite takes it
# exclusively to stop and break servers, and must not do so in the middle of the demo.
exec 9>"$ROOT/.sandbox-lock"
if ! flock -s -n 9; then
  echo "demo: waiting for the sandbox lock ($ROOT/.sandbox-lock): tests are running" >&2
  flock -s -w 3600 9 || { echo "demo: the sandbox is still locked after 1h" >&2; exit 1; }
fi

step "Setup: LXD packages, the Pulumi engine, the compiled provider (quick when already done)"
bash "$ROOT/scripts/setup.sh"

step "Sandbox: LXD servers s1, s2 and a 3-member cluster (scripts/sandbox.sh up)"
# (fd 9 closed: a daemon this starts must not keep holding the lock after the demo.)
bash "$ROOT/scripts/sandbox.sh" up 9>&-

# lxc and pulumi against the sandbox and the checkout's local backend, not ~/.config or ~/.pulumi.
# shellcheck source=scripts/env.sh
. "$ROOT/scripts/env.sh"
bash "$ROOT/scripts/link-example.sh" "$EXAMPLE"
cd "$EXAMPLE"

step "Clean slate: no demo stack and no '$NAME' left by an earlier run"
if pulumi stack select "$STACK" >/dev/null 2>&1; then
  # Refresh first: what an interrupted run left may no longer exist, or be elsewhere (P6).
  pulumi refresh --yes --skip-preview >/dev/null || true
  pulumi destroy --yes --skip-preview >/dev/null
  pulumi stack rm "$STACK" --yes >/dev/null
  echo "removed the demo stack of an earlier run"
fi
# An instance of that name left by a run whose state is gone: only one the provider made (it
# carries the provider's ownership marker) is deleted.
for remote in "$FROM" "$TO"; do
  if [ -n "$(lxc config get "$remote:$NAME" user.lxd-placement.id 2>/dev/null || true)" ]; then
    lxc delete --force "$remote:$NAME"
    echo "deleted $remote:$NAME left by an earlier run"
  fi
done
pulumi stack init "$STACK" >/dev/null
echo "stack '$STACK' of $(basename "$EXAMPLE"), state in ${PULUMI_BACKEND_URL#file://}"

step "Place the container on $FROM and create it"
show pulumi config set placement "$FROM"
show pulumi up --yes --skip-preview

step "Write a file inside it"
show lxc exec "$FROM:$NAME" -- sh -c 'echo hello > /root/hello'
show lxc exec "$FROM:$NAME" -- cat /root/hello

step "Change its placement to $TO: preview shows the plan, changes nothing"
show pulumi config set placement "$TO"
show pulumi preview

step "Move it: pulumi up (an update, not a replace)"
started=$SECONDS
show pulumi up --yes
took=$((SECONDS - started))

step "Where it lives now, and the file"
show lxc list "$FROM:"
show lxc list "$TO:"
content="$(lxc exec "$TO:$NAME" -- cat /root/hello)"
show lxc exec "$TO:$NAME" -- cat /root/hello
[ -z "$(lxc list "$FROM:$NAME" --format csv -c n | grep -x "$NAME" || true)" ] || { echo "demo: $NAME is still on $FROM" >&2; exit 1; }
[ "$content" = hello ] || { echo "demo: /root/hello on $TO:$NAME is '$content', not 'hello'" >&2; exit 1; }

step "What the move recorded (stack output lastMove)"
last="$(pulumi stack output lastMove --json)"
echo "$last"
summary="$(node -e '
  const m = JSON.parse(process.argv[1]);
  console.log(`${m.durationSeconds}s, downtime ${m.downtimeSeconds}s (strategy ${m.strategy}${m.mode ? `, ${m.mode}` : ""})`);
' "$last")"

step "Clean up: destroy and remove the demo stack"
show pulumi destroy --yes --skip-preview
show pulumi stack rm "$STACK" --yes

echo
echo "moved $NAME from $FROM to $TO in $summary, data intact (pulumi up took ${took}s in all)."
echo "The sandbox is still up: see it with 'npm run sandbox -- status', stop it with 'npm run sandbox -- down'."
