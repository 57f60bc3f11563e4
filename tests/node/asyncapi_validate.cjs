// Parse an AsyncAPI document (stdin) with the official parser; print its diagnostics as JSON.
// Exit 0 when the parser built a document without an error diagnostic, 1 otherwise.
// The parser is found through NODE_PATH (tests/test_contract.py sets it).
const { Parser } = require("@asyncapi/parser");

async function main() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  const { document, diagnostics } = await new Parser().parse(Buffer.concat(chunks).toString("utf8"));
  const found = diagnostics.map((d) => ({ severity: d.severity, code: d.code, message: d.message, path: d.path.join(".") }));
  const errors = found.filter((d) => d.severity === 0);
  const summary = document ? {
    version: document.version(),
    channels: document.channels().all().map((c) => c.address()),
    messages: document.messages().all().map((m) => m.name()),
    operations: document.operations().all().map((o) => ({ id: o.id(), action: o.action() })),
  } : null;
  process.stdout.write(JSON.stringify({ ok: Boolean(document) && errors.length === 0, diagnostics: found, document: summary }) + "\n");
  process.exit(document && errors.length === 0 ? 0 : 1);
}

main().catch((e) => { process.stderr.write(String(e && e.stack || e) + "\n"); process.exit(2); });
