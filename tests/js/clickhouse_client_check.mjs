// @clickhouse/client, unmodified, against a ClickHouse HTTP endpoint: what the Python test
// (tests/integration/test_chserver.py) reads back from this script's JSON on stdout.
// Usage: node clickhouse_client_check.mjs URL TABLE
import { createClient } from '@clickhouse/client'

const [url, table] = process.argv.slice(2)
const client = createClient({ url, compression: { request: true, response: true } })
const out = {}
out.ping = (await client.ping()).success
const params = await client.query({
  query: 'SELECT {n: UInt32} + 1 AS n, {s: String} AS s',
  query_params: { n: 41, s: "it's" },
  format: 'JSONEachRow',
})
out.params = await params.json()
await client.insert({
  table,
  values: [{ id: 11, name: 'js', score: 1.5, at: '2026-01-01 00:00:00.000' }],
  format: 'JSONEachRow',
})
const counted = await client.query({
  query: `SELECT count() AS c FROM ${table} WHERE name = 'js'`,
  format: 'JSON',
})
out.count = (await counted.json()).data[0].c
try {
  await client.query({ query: 'SELECT throwIf(1)', format: 'JSON' })
  out.error = null
} catch (error) {
  out.error = { code: error.code, message: String(error.message).slice(0, 80) }
}
await client.close()
console.log(JSON.stringify(out))
