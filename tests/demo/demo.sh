#!/usr/bin/env bash
# `make demo`: rotate the JWT-bearer certificate of a Connected App in a local Salesforce org
# emulator, with the private key kept in rekey's local file store, and prove the switch:
# Salesforce accepts a token signed by the new key and refuses the old one. Then rotate the
# consumer key and secret of an External Client App (client credentials flow) the same way, with
# Salesforce accepting both pairs until `rekey retire` deletes the old one.
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

# A consumer of the ETL app's pair reads it from the store's files, as a job would; the pair only
# ever goes into shell variables, never on screen. Sets pair_key and pair_secret to STAGE's pair.
store_pair() {
  local out
  out=$(python3 - "$work/keys/etl" "$1" <<'PY'
import json, pathlib, sys
folder, stage = pathlib.Path(sys.argv[1]), sys.argv[2]
generation = json.loads((folder / "stages.json").read_text())[stage]
pair = json.loads((folder / f"{generation:06d}.key").read_text())
print(pair["consumerKey"])
print(pair["consumerSecret"])
PY
  )
  pair_key=${out%%$'\n'*}
  pair_secret=${out#*$'\n'}
  [ -n "$pair_key" ] && [ -n "$pair_secret" ] || { echo "no $1 pair in the store"; exit 1; }
}
# Salesforce's own answer to a client credentials login with LABEL's pair KEY SECRET, which must
# be HTTP WANT (and, for a refusal, name the error GREP). The pair goes to curl on stdin (not in
# the process list); the key is shortened on screen, the secret and any access token never shown.
login() {
  local label=$1 key=$2 secret=$3 want=$4 grep=${5:-} answer code body
  echo
  echo "\$ curl -s -X POST $url/services/oauth2/token -d grant_type=client_credentials -d client_id=${key:0:12}… -d client_secret=********   # the $label"
  answer=$(printf 'grant_type=client_credentials&client_id=%s&client_secret=%s' "$key" "$secret" |
    curl -sS -X POST "$url/services/oauth2/token" --data-binary @- -w '\n%{http_code}')
  code=${answer##*$'\n'}
  body=${answer%$'\n'*}
  if [ "$code" = 200 ]; then echo "HTTP 200: access token issued (not shown)"; else echo "HTTP $code $body"; fi
  [ "$code" = "$want" ] || { echo "expected HTTP $want for the $label, got $code"; exit 1; }
  [ -z "$grep" ] || grep -q "$grep" <<<"$body" || { echo "expected Salesforce's $grep for the $label"; exit 1; }
}

echo
echo "== 6. A consumer secret: the Nightly ETL External Client App (client credentials flow)"
cat "$root/tests/demo/etl.toml" >> rekey.toml
rekey import etl
rekey status etl
store_pair current
old_key=$pair_key old_secret=$pair_secret
login "pair imported from Salesforce" "$old_key" "$old_secret" 200

echo
echo "== 7. Rotate it through Salesforce's staged credentials"
rekey plan etl
rekey rotate etl
store_pair current
new_key=$pair_key new_secret=$pair_secret
[ "$new_key" != "$old_key" ] || { echo "expected a new consumer key in the store's CURRENT"; exit 1; }
echo
echo "== 8. The overlap: the new pair logs in, and so does the old one until it is retired"
login "new pair (store CURRENT)" "$new_key" "$new_secret" 200
login "old pair" "$old_key" "$old_secret" 200
rekey status etl

echo
echo "== 9. Retire the old pair: Salesforce refuses it from now on"
rekey retire etl
login "old pair, retired" "$old_key" "$old_secret" 400 invalid_client_id
login "new pair" "$new_key" "$new_secret" 200
echo
echo "\$ rekey token etl --no-cache   # the access token masked"
"$bin/rekey" --config "$work/rekey.toml" token etl --no-cache | sed -E 's/("access_token" *: *")[^"]*/\1<masked>/'

echo
echo "== 10. Govern the whole org: every OAuth app against the hardening checklist"
rekey inventory
# The demo org keeps a few findings on purpose (no owner set, an unmanaged app); the audit's
# exit code says how bad the worst one is, which a demo shows rather than stops on.
audit_code=0
rekey audit || audit_code=$?
echo "(rekey audit exited $audit_code: 0 clean, 1 warnings, 2 critical findings)"
[ "$audit_code" -le 2 ] || { echo "the audit could not read the demo org"; exit 1; }

echo
echo "demo done: the Connected App's certificate was rotated and proven, and the legacy-etl consumer holds the new pair;"
echo "the ETL app's consumer secret was rotated with no gap (both pairs valid until retire), and the old pair is refused; files are in $work"
