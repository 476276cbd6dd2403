#!/usr/bin/env bash
# A GitOps pipeline for placement, played against a Git repository here (docs/gitops.md):
#
#   scripts/gitops.sh on-push REPO REF     what CI runs when REF is pushed to REPO: a branch is
#                                          reviewed (preview --refresh --diff with the policy pack;
#                                          the review comment, Markdown, goes to
#                                          $GITOPS_OUT/<branch>.md),
#                                          main is applied (up --refresh --yes, with the policy pack:
#                                          the refresh first finds instances moved outside Git)
#   scripts/gitops.sh merge REPO BRANCH    merge BRANCH into main (a pull request's merge button),
#                                          then apply main
#   scripts/gitops.sh drift REPO           (or --drift) drift check of main: preview --refresh
#                                          --expect-no-changes; exits 7 naming each instance that
#                                          is not where main declares it
#   scripts/gitops.sh install-hook REPO    a post-receive hook in REPO (a bare repository) that
#                                          runs on-push for every pushed branch
#
# REPO (a path or a URL git can clone) holds a Pulumi project (examples/gitops is one) at
# $GITOPS_DIR (default: its root), with per-stack config Pulumi.<stack>.yaml and, optionally,
# the policy config policy.json.
# Settings: GITOPS_STACK (dev), GITOPS_DIR (.), GITOPS_OUT (.sandbox/gitops of this checkout),
# GITOPS_MAIN (main); by default it runs against the sandbox and the local state of
# `. scripts/env.sh`, GITOPS_BACKEND_URL and GITOPS_LXD_CONF name a real backend and lxc config.
# The CI definitions in examples/gitops/ci/ call this script the same way.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=env.sh
. "$here/env.sh"
# env.sh points Pulumi and lxc at the sandbox; a pipeline of real servers names its own.
if [ -n "${GITOPS_BACKEND_URL:-}" ]; then export PULUMI_BACKEND_URL=$GITOPS_BACKEND_URL; fi
if [ -n "${GITOPS_LXD_CONF:-}" ]; then export LXD_CONF=$GITOPS_LXD_CONF; fi

STACK=${GITOPS_STACK:-dev}
SUBDIR=${GITOPS_DIR:-.}
OUT=${GITOPS_OUT:-$SANDBOX/gitops}
MAIN=${GITOPS_MAIN:-main}
HOOK_MARK="# lxd-placement gitops hook"

log() { echo "gitops: $*" >&2; }
die() { log "error: $*"; exit 2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }

# checkout REPO REF: a fresh clone of REF under $OUT/work, ready to run: sets CLONE (remove it
# when done) and PROJECT (the Pulumi project in it).
CLONE="" PROJECT=""
checkout() {
  local repo=$1 ref=$2
  mkdir -p "$OUT/work"
  CLONE=$(mktemp -d "$OUT/work/${ref//\//-}.XXXXXX")
  PROJECT="$CLONE/$SUBDIR"
  git clone -q --branch "$ref" "$repo" "$CLONE" || die "cannot check out $ref of $repo"
  [ -f "$PROJECT/Pulumi.yaml" ] || die "$repo:$ref has no Pulumi project at $SUBDIR"
  bash "$ROOT/scripts/link-example.sh" "$PROJECT" 2>/dev/null
  (cd "$PROJECT" && pulumi stack select --create "$STACK" >/dev/null)
}

# The policy pack, and its config as $MAIN has it (policy.json beside Pulumi.yaml, if there is
# one): a branch under review cannot loosen the rules it is reviewed against.
policy_args() {
  local cfg="$CLONE/.policy.json"
  echo "--policy-pack" "$LXD_PLACEMENT_POLICY_PACK"
  if git -C "$PROJECT" show "origin/$MAIN:$SUBDIR/policy.json" >"$cfg" 2>/dev/null; then
    echo "--policy-pack-config" "$cfg"
  fi
  return 0
}

# preview_events PROJECT EVENTS ARGS...: a preview whose engine events go to EVENTS; its status.
preview_events() {
  local project=$1 events=$2
  shift 2
  local rc=0
  (cd "$project" && PULUMI_ENABLE_STREAMING_JSON_PREVIEW=1 pulumi preview --json "$@" >"$events" 2>"$events.stderr") || rc=$?
  return "$rc"
}

review() {
  local repo=$1 branch=$2 sha events file rc=0
  checkout "$repo" "$branch"
  sha=$(git -C "$PROJECT" rev-parse --short HEAD)
  events="$OUT/${branch//\//-}.events.jsonl"
  file="$OUT/${branch//\//-}.md"
  log "review of $branch ($sha): preview --refresh --diff with the policy pack"
  # shellcheck disable=SC2046 # the policy arguments are words
  preview_events "$PROJECT" "$events" --refresh --diff $(policy_args) || rc=$?
  node "$ROOT/bin/gitops/report.js" comment "$events" --title "Placement plan for stack \`$STACK\`: \`$branch\` at $sha" >"$file"
  if [ "$rc" -ne 0 ] && ! grep -q '"summaryEvent"' "$events"; then
    # The engine stopped before it could say anything: put its own words in the comment.
    { echo; echo '```'; tail -n 20 "$events.stderr"; echo '```'; } >>"$file"
  fi
  log "review comment: $file"
  cat "$file"
  rm -rf "$CLONE"
  return "$rc"
}

apply() {
  local repo=$1 sha rc=0
  checkout "$repo" "$MAIN"
  sha=$(git -C "$PROJECT" rev-parse --short HEAD)
  log "apply of $MAIN ($sha): up --refresh --yes with the policy pack"
  # shellcheck disable=SC2046 # the policy arguments are words
  (cd "$PROJECT" && pulumi up --yes --refresh $(policy_args)) 2>&1 | tee "$OUT/$MAIN-$sha.log" || rc=$?
  rm -rf "$CLONE"
  [ "$rc" -eq 0 ] || log "apply of $MAIN ($sha) failed: $OUT/$MAIN-$sha.log"
  return "$rc"
}

cmd_on_push() {
  local repo=$1 ref=$2 branch
  branch=${ref#refs/heads/}
  mkdir -p "$OUT"
  if [ "$branch" = "$MAIN" ]; then apply "$repo"; else review "$repo" "$branch"; fi
}

cmd_merge() {
  local repo=$1 branch=$2 work
  mkdir -p "$OUT/work"
  work=$(mktemp -d "$OUT/work/merge.XXXXXX")
  git clone -q --branch "$MAIN" "$repo" "$work"
  git -C "$work" merge -q --no-ff -m "Merge $branch" "origin/$branch" || die "$branch does not merge cleanly into $MAIN"
  log "merging $branch into $MAIN"
  git -C "$work" push -q origin "$MAIN"
  rm -rf "$work"
  # A repository with the hook applied main on the push already.
  if grep -qs "$HOOK_MARK" "$repo/hooks/post-receive"; then return 0; fi
  apply "$repo"
}

cmd_drift() {
  local repo=$1 events rc=0
  mkdir -p "$OUT"
  checkout "$repo" "$MAIN"
  events="$OUT/drift.events.jsonl"
  log "drift check of $MAIN: preview --refresh --expect-no-changes"
  preview_events "$PROJECT" "$events" --refresh --expect-no-changes || rc=$?
  node "$ROOT/bin/gitops/report.js" drift "$events"
  rm -rf "$CLONE"
  if [ "$rc" -eq 0 ]; then
    log "no drift: every instance is where $MAIN declares it"
  elif [ "$rc" -ne 7 ]; then
    log "the drift check itself failed (exit $rc):"
    tail -n 20 "$events.stderr" >&2
  fi
  return "$rc"
}

cmd_install_hook() {
  local repo=$1
  [ -d "$repo/hooks" ] || die "$repo is not a bare repository here"
  cat >"$repo/hooks/post-receive" <<EOF
#!/usr/bin/env bash
$HOOK_MARK: review every pushed branch, apply $MAIN.
# The pipeline works on clones of its own: not in this repository's environment.
# shellcheck disable=SC2046
unset \$(git rev-parse --local-env-vars)
while read -r _old new ref; do
  [ "\$new" = 0000000000000000000000000000000000000000 ] && continue
  bash "$ROOT/scripts/gitops.sh" on-push "\$(pwd)" "\$ref" || echo "gitops: \$ref: the pipeline failed" >&2
done
EOF
  chmod +x "$repo/hooks/post-receive"
  log "post-receive hook installed in $repo"
}

[ $# -ge 2 ] || usage
cmd=$1
# A local repository by its absolute path; anything else (a URL) as given.
if [ -d "$2" ]; then repo=$(cd "$2" && pwd); else repo=$2; fi
case $cmd in
  on-push) [ $# -eq 3 ] || usage; cmd_on_push "$repo" "$3" ;;
  merge) [ $# -eq 3 ] || usage; cmd_merge "$repo" "$3" ;;
  drift | --drift) [ $# -eq 2 ] || usage; cmd_drift "$repo" ;;
  install-hook) [ $# -eq 2 ] || usage; cmd_install_hook "$repo" ;;
  *) usage ;;
esac
