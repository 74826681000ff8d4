// @clickhouse/client, unmodified, as an analyst uses it against Riverbed's analysts' endpoint
// (tests/integration/test_sql_gateway.py reads back this script's JSON on stdout).
// Usage: node clickhouse_analyst_check.mjs URL KEY MARK
import { createClient } from '@clickhouse/client'

const [url, key, mark] = process.argv.slice(2)
const client = createClient({
  url,
  username: 'analyst',
  password: key,
  compression: { request: true, response: true },
})
const out = {}
out.ping = (await client.ping()).success
const views = await client.query({
  query:
    'SELECT page FROM riverbed.events_pageviews WHERE user_id = {mark: String} ORDER BY page',
  query_params: { mark },
  format: 'JSONEachRow',
})
out.pages = (await views.json()).map((row) => row.page)
async function failure(run) {
  try {
    await run()
    return null
  } catch (error) {
    return { code: error.code, message: String(error.message).slice(0, 120) }
  }
}
out.insert = await failure(() =>
  client.insert({
    table: 'riverbed.events_pageviews',
    values: [{ page: '/js' }],
    format: 'JSONEachRow',
  }),
)
out.drop = await failure(() => client.command({ query: 'DROP TABLE riverbed.events_pageviews' }))
await client.close()
console.log(JSON.stringify(out))
