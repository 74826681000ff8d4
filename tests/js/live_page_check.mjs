// Drives Riverbed's live page (/live/) in headless Chromium, as a person would, for
// tests/e2e/test_live_page.py: one JSON command per stdin line, one JSON answer per stdout line.
//
//   {"do": "open"}              sign in with the API key, follow the filters; answers once live
//   {"do": "count", "at_least"}  waits until the group's row counts that many events
//   {"do": "drop"}              closes the page's EventSource, as a lost connection would
//   {"do": "follow"}            the page's own reconnect (from the last id it saw)
//   {"do": "quit"}
//
// Every SSE message the page receives is recorded (type and id) by wrapping EventSource's
// listeners before the page's script runs, so the test can check resume without duplicates.
import readline from "node:readline";
import puppeteer from "puppeteer-core";

const config = JSON.parse(process.argv[2]);
const say = (answer) => process.stdout.write(`${JSON.stringify(answer)}\n`);

const browser = await puppeteer.launch({
  executablePath: config.chromium,
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
});
const page = await browser.newPage();
const problems = [];
page.on("pageerror", (error) => problems.push(String(error)));
// Responses the browser logs as errors are not the page's: /v1/me answers 401 before sign-in
// (how the page learns it must ask), and there is no favicon.
page.on("console", (message) => {
  if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
    problems.push(message.text());
  }
});
await page.evaluateOnNewDocument(() => {
  window.__seen = [];
  const add = EventSource.prototype.addEventListener;
  EventSource.prototype.addEventListener = function (type, listener, options) {
    const recorded = (event) => {
      window.__seen.push({ type, id: event.lastEventId, data: event.data });
      return listener.call(this, event);
    };
    return add.call(this, type, recorded, options);
  };
});

async function rowOf(group) {
  return page.evaluate((wanted) => {
    for (const row of document.querySelectorAll("#windows tbody tr")) {
      if (row.children[2].textContent === wanted && row.children[1].textContent === "*") {
        return { count: Number(row.dataset.count), group: row.children[2].textContent };
      }
    }
    return null;
  }, group);
}

const commands = readline.createInterface({ input: process.stdin });
for await (const line of commands) {
  const command = JSON.parse(line);
  try {
    if (command.do === "open") {
      const query = new URLSearchParams({ stream: config.stream, group: config.group });
      await page.goto(`${config.base}/live/?${query}`);
      await page.waitForSelector("#sign-in:not([hidden])");
      await page.type("#sign-in [name=key]", config.key);
      await page.click("#sign-in button[type=submit]");
      await page.waitForFunction(() => document.querySelector("#status").textContent === "live");
      say({ ok: true });
    } else if (command.do === "count") {
      await page.waitForFunction(
        (wanted, atLeast) =>
          [...document.querySelectorAll("#windows tbody tr")].some(
            (row) => row.children[2].textContent === wanted && Number(row.dataset.count) >= atLeast,
          ),
        { timeout: 30000 },
        config.group,
        command.at_least,
      );
      say({
        ok: true,
        row: await rowOf(config.group),
        injected: await page.evaluate(() => window.__injected === true),
      });
    } else if (command.do === "drop") {
      say({ ok: true, last_id: await page.evaluate(() => { state.source.close(); return state.lastId; }) });
    } else if (command.do === "follow") {
      await page.evaluate(() => follow());
      say({ ok: true });
    } else if (command.do === "quit") {
      say({ ok: true, seen: await page.evaluate(() => window.__seen), problems });
      break;
    }
  } catch (error) {
    say({ ok: false, error: String(error), problems });
  }
}
await browser.close();
