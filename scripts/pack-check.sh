#!/usr/bin/env bash
# The package as a consumer gets it: `npm pack`, install the tarball into an empty project
# (from the npm cache where it can, the registry otherwise; the addon builds from source there), then run `npx dit-poc info`
# and `import('dit-poc')`. Too slow for the unit suite (the addon compiles); .ci/run runs it and
# counts it as one test. Prints "pack-check: ok" on success.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
npm pack --silent --pack-destination "$tmp" >/dev/null
tarball=$(ls "$tmp"/dit-poc-*.tgz)
# What a consumer downloads: no tests, no build outputs, no bench.
if tar -tzf "$tarball" | grep -E '^package/(test|bench|build|node_modules)/'; then
  echo "pack-check: the tarball carries files outside the whitelist"; exit 1
fi
mkdir "$tmp/app"
cd "$tmp/app"
npm init -y >/dev/null
npm install --prefer-offline --no-audit --no-fund "$tarball" >"$tmp/install.log" 2>&1 || { tail -30 "$tmp/install.log"; exit 1; }
npx --no-install dit-poc --version
npx --no-install dit-poc info | head -3
node --input-type=module -e "
const m = await import('dit-poc');
for (const f of ['openModel', 'NonceRunner', 'makeRound', 'SmstBuilder', 'verifyProof', 'validateBundle', 'startServer']) if (typeof m[f] !== 'function') throw new Error('dit-poc does not export ' + f);
const round = m.makeRound({ model: 'wan-tiny', blockHash: 'AB', publicKey: 'pk' });
const model = await m.openModel(round, 1);
const [a] = await new m.NonceRunner(model, round).run([7]);
model.dispose();
const tree = new m.SmstBuilder();
tree.add(a.nonce, Buffer.from(a.vectorB64, 'base64'));
const ok = m.verifyProof(tree.root(), tree.count, 0, a.nonce, Buffer.from(a.vectorB64, 'base64'), tree.proof(0).proof);
if (!ok.ok) throw new Error('proof does not verify: ' + ok.reason);
console.log('import ok: nonce 7 ->', a.vectorB64, 'root', tree.rootHex());
"
test -f node_modules/dit-poc/dist/src/index.d.ts
echo "pack-check: ok"
