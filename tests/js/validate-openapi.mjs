// Validates an OpenAPI document against the official OpenAPI JSON schemas (3.0, 3.1, 3.2)
// with @seriousme/openapi-schema-validator, which also checks that every internal `$ref`
// resolves (the schemas alone cannot). tests/it/desk.rs runs it on the document the server
// serves at /api/openapi.json.
//
//   node validate-openapi.mjs [document.json | -]     (no argument or `-`: read stdin)
//
// The document must be JSON. Exit 0: valid (one line on stdout naming the version).
// Exit 1: not valid, or not JSON; the validator's errors go to stderr.
// Exit 2: bad usage, or the file cannot be read.

import { readFile } from "node:fs/promises"
import { argv, exit, stdin } from "node:process"

import { Validator } from "@seriousme/openapi-schema-validator"

async function readAll(stream) {
  const chunks = []
  for await (const chunk of stream) chunks.push(chunk)
  return Buffer.concat(chunks).toString("utf8")
}

const args = argv.slice(2)
if (args.length > 1) {
  console.error("usage: node validate-openapi.mjs [document.json | -]")
  exit(2)
}
const source = args[0] ?? "-"

let text
try {
  text = source === "-" ? await readAll(stdin) : await readFile(source, "utf8")
} catch (e) {
  console.error(`cannot read ${source === "-" ? "stdin" : source}: ${e.message}`)
  exit(2)
}

let document
try {
  document = JSON.parse(text)
} catch (e) {
  console.error(`${source === "-" ? "stdin" : source} is not JSON: ${e.message}`)
  exit(1)
}
// The validator also takes strings (as file names or YAML): hand it only a parsed object.
if (document === null || typeof document !== "object" || Array.isArray(document)) {
  console.error("the document is not a JSON object")
  exit(1)
}

const validator = new Validator()
const result = await validator.validate(document)
if (!result.valid) {
  console.error(`not a valid OpenAPI document:\n${JSON.stringify(result.errors, null, 2)}`)
  exit(1)
}
console.log(`valid OpenAPI ${validator.version} document`)
