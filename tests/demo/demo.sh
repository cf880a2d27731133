#!/usr/bin/env bash
# `make demo`: rotate the JWT-bearer certificate of a Connected App in a local Salesforce org
# emulator, with the private key kept in rekey's local file store, and prove the switch:
# Salesforce accepts a token signed by the new key and refuses the old one.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
work="$root/target/demo"
cargo build --quiet --manifest-path "$root/Cargo.toml" -p rekey -p orgsim
bin="${CARGO_TARGET_DIR:-$root/target}/debug"
rekey() { echo; echo "\$ rekey $*"; "$bin/rekey" --config "$work/rekey.toml" "$@"; }

rm -rf "$work" && mkdir -p "$work" && cd "$work"
cp "$root/tests/demo/seed.toml" seed.toml

echo "== 1. Today's setup: keys made with openssl, certificates already on the apps"
for name in admin billing billing-eca; do
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=$name-legacy" \
    -keyout "$name.key" -out "$name.crt" 2>/dev/null
done
chmod 600 ./*.key

"$bin/orgsim" --seed seed.toml --port 0 --url-file url > orgsim.log 2>&1 &
orgsim_pid=$!
trap 'kill $orgsim_pid 2>/dev/null || true; wait $orgsim_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -s url ] && break; sleep 0.1; done
[ -s url ] || { echo "orgsim did not start:"; cat orgsim.log; exit 1; }
url=$(cat url)
echo "org emulator listening on $url"
sed "s#@LOGIN_URL@#$url#" "$root/tests/demo/rekey.toml.in" > rekey.toml
# A consumer that cannot read the store: rekey hands it the key and certificate as files, right
# after the new key is promoted (webhook, exec and store consumers: see src/consumers/README.md).
mkdir -p legacy-etl
cat >> rekey.toml <<'TOML'

[[credentials.billing.consumers]]
name = "legacy-etl"
kind = "file"
key_path = "legacy-etl/billing.key"
cert_path = "legacy-etl/billing.crt"
TOML

echo
echo "== 2. Put the integration's existing key under rekey's management"
rekey import billing --key billing.key --cert billing.crt
rekey status
rekey verify billing

echo
echo "== 3. Rotate"
rekey plan billing
rekey rotate billing

echo
echo "== 4. After"
rekey status
rekey check billing
rekey inspect legacy-etl/billing.key legacy-etl/billing.crt
echo
echo "== 5. Salesforce accepts the new key and refuses the old one"
rekey verify billing
set +e
rekey verify billing --stage previous
code=$?
set -e
if [ "$code" != 3 ]; then echo "expected the old key to be refused (exit 3), got $code"; exit 1; fi
echo
echo "demo done: the Connected App's certificate was rotated and proven, and the legacy-etl consumer holds the new pair; files are in $work"
