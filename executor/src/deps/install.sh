# Installs one dependency set into the cache volume, mounted at /deps.
# Arguments: the set's key and a random nonce; stdin: its package.json.
# /deps/<key> appears only once complete (an atomic rename), so a killed or
# failed install never leaves a half-filled entry behind. Prints "present"
# or "installed" on stdout; npm's own output goes to stderr. Exits 69 when
# the registry cannot be reached at all, before npm spends minutes retrying.
set -eu
key="$1"
dir="/deps/.partial-$key-$2"
if [ -d "/deps/$key" ]; then
  echo present
  exit 0
fi
# What installs killed long ago left behind.
find /deps -maxdepth 1 -name '.partial-*' -mmin +120 -exec rm -rf {} + 2>/dev/null || true
trap 'rm -rf "$dir"' EXIT
mkdir "$dir"
cd "$dir"
cat > package.json
# One quick ping without retries. An HTTP error (E404, E401...) still means
# the registry answers; a connection, DNS or TLS failure means it does not.
if ! npm ping --fetch-retries=0 --fetch-timeout=10000 --cache "$dir/.npm-cache" >/dev/null 2>"$dir/ping.err"; then
  if ! grep -Eq 'code E[0-9]{3}' "$dir/ping.err"; then
    cat "$dir/ping.err" >&2
    exit 69
  fi
fi
rm -f "$dir/ping.err"
npm install --ignore-scripts --omit=dev --no-audit --no-fund --no-update-notifier --cache "$dir/.npm-cache" >&2
rm -rf "$dir/.npm-cache"
if mv -T "$dir" "/deps/$key" 2>/dev/null || [ -d "/deps/$key" ]; then
  echo installed
else
  echo "cannot move the finished install to /deps/$key" >&2
  exit 1
fi
