// The dashboard in a real Chromium (Debian's package) against a live hop, started by
// tests/browser.rs, which passes:
//   HOP_URL         the server, e.g. http://127.0.0.1:41234
//   HOP_SETUP_LINK  the one-time password link the first start printed for `admin`
//   HOP_SHOTS       where the screenshots go (docs/screenshots)
//   CHROMIUM        the browser binary
// Every check throws on failure, and the process exits non-zero.
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import path from "node:path";

const base = process.env.HOP_URL;
const setupLink = process.env.HOP_SETUP_LINK;
const shots = process.env.HOP_SHOTS;
const password = "a dashboard password";
// Markup in every field a user types: none of it may run or become elements.
const payload = `<img src=x onerror="window.__xss=1"><script>window.__xss=1</script>"'`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox"],
});
const origin = new URL(base).origin;
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin });
const page = await context.newPage();
// A script error or anything the CSP blocked is a failure. (Chromium also logs every
// 4xx answer as a console error: the tests ask for some on purpose.)
const problems = [];
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
page.on("console", (message) => {
  const text = message.text();
  if (message.type() === "error" && !text.startsWith("Failed to load resource")) {
    problems.push(`console: ${text}`);
  }
});
const shot = (name) => page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
const noXss = async () =>
  assert.equal(await page.evaluate(() => window.__xss), undefined, "an injected script ran");

// 1. The first start's link: set the admin's password, and be signed in.
await page.goto(setupLink);
await shot("set-password");
await page.getByLabel("New password").fill(password);
await page.getByLabel("Once more").fill("not the same");
await page.getByRole("button", { name: "Set password and sign in" }).click();
assert.match(await page.getByRole("alert").innerText(), /differ/);
await page.getByLabel("New password").fill(password);
await page.getByLabel("Once more").fill(password);
await page.getByRole("button", { name: "Set password and sign in" }).click();
await page.waitForURL(`${base}/app/links`);
assert.match(await page.locator("main").innerText(), /No links found/);

// 2. Create a link with markup in its title and tags; copy its short URL.
await page.getByRole("link", { name: "New link" }).first().click();
await page.getByLabel("Target URL").fill("https://example.com/from/the/browser?x=1&y=2");
await page.getByLabel("Alias").fill("browser-1");
await page.getByLabel("Title").fill(payload);
await page.getByLabel("Tags").fill("launch, browser");
await page.getByRole("button", { name: "Create" }).click();
await page.getByRole("heading", { name: "Link created" }).waitFor();
const shortUrl = await page.getByLabel("Short URL").inputValue();
assert.equal(shortUrl, `${base}/browser-1`);
await page.getByRole("button", { name: "Copy" }).click();
assert.equal(await page.evaluate(() => navigator.clipboard.readText()), shortUrl);
const qrWidth = await page
  .locator("figure.qr img")
  .evaluate((img) => img.decode().then(() => img.naturalWidth));
assert.equal(qrWidth, 256, "the QR code image loads");
assert.ok((await page.locator("main").innerText()).includes(payload), "the title shows as text");
await noXss();
await shot("created");

// A bad target: the form again, filled in, with the reason.
await page.goto(`${base}/app/links/new`);
await page.getByLabel("Target URL").fill("https://example.com/second");
await page.getByLabel("Alias").fill("browser-1");
await page.getByRole("button", { name: "Create" }).click();
assert.match(await page.getByRole("alert").innerText(), /already taken/);
assert.equal(await page.getByLabel("Target URL").inputValue(), "https://example.com/second");

// The short URL redirects to the target.
const redirect = await context.request.get(shortUrl, { maxRedirects: 0 });
assert.equal(redirect.status(), 302);
assert.equal(redirect.headers().location, "https://example.com/from/the/browser?x=1&y=2");

// 3. The links page: the row, search, and the copy button.
for (let i = 2; i <= 3; i++) {
  await page.goto(`${base}/app/links/new`);
  await page.getByLabel("Target URL").fill(`https://example.org/page/${i}`);
  await page.getByLabel("Title").fill(`Page ${i}`);
  await page.getByRole("button", { name: "Create" }).click();
  await page.getByRole("heading", { name: "Link created" }).waitFor();
}
await page.goto(`${base}/app/links`);
assert.equal(await page.locator("table.links tbody tr").count(), 3);
await noXss();
await shot("links");
await page.getByLabel("Search").fill("browser");
await page.getByRole("button", { name: "Search" }).click();
await page.waitForURL(/q=browser/);
const rows = page.locator("table.links tbody tr");
assert.equal(await rows.count(), 1);
assert.match(await rows.first().innerText(), /browser-1/);
assert.match(await rows.first().innerText(), /active/);
await rows.first().getByRole("button", { name: /Copy/ }).click();
assert.equal(await page.evaluate(() => navigator.clipboard.readText()), shortUrl);
await noXss();

// 4. The link's page: change the target and see the redirect follow; disable;
//    delete after the confirmation.
await page.goto(`${base}/app/links`);
await page.getByRole("link", { name: `${base}/browser-1` }).click();
await page.getByRole("heading", { name: "browser-1" }).waitFor();
await shot("link");
await page.getByLabel("Target URL").fill("https://example.com/changed");
await page.getByLabel("Redirect").selectOption("301");
await page.getByRole("button", { name: "Save" }).click();
await page.getByRole("status").filter({ hasText: "Saved." }).waitFor();
let followed = await context.request.get(shortUrl, { maxRedirects: 0 });
assert.equal(followed.status(), 301);
assert.equal(followed.headers().location, "https://example.com/changed");
await page.getByRole("button", { name: "Disable" }).click();
await page.getByRole("button", { name: "Enable" }).waitFor();
assert.equal((await context.request.get(shortUrl, { maxRedirects: 0 })).status(), 410);
await page.getByRole("button", { name: "Enable" }).click();
await page.getByRole("button", { name: "Disable" }).waitFor();
const download = page.waitForEvent("download");
await page.getByRole("link", { name: "PNG, 1024 px" }).click();
assert.equal((await download).suggestedFilename(), "browser-1-qr.png");
await page.getByRole("link", { name: "Delete…" }).click();
await page.getByRole("heading", { name: "Delete browser-1?" }).waitFor();
await page.getByRole("link", { name: "Keep it" }).click();
await page.getByRole("heading", { name: "browser-1" }).waitFor();
await page.getByRole("link", { name: "Delete…" }).click();
await page.getByRole("button", { name: "Delete" }).click();
await page.waitForURL(`${base}/app/links`);
assert.equal((await context.request.get(shortUrl, { maxRedirects: 0 })).status(), 404);
assert.equal(await page.locator("table.links tbody tr").count(), 2);

// 5. API keys: create one (shown once, copied), use it, revoke it.
await page.getByRole("link", { name: "API keys" }).click();
await page.getByLabel("Name of a new key").fill("browser test");
await page.getByRole("button", { name: "Create key" }).click();
await page.getByRole("heading", { name: "Key created" }).waitFor();
const secret = await page.getByLabel("browser test").inputValue();
await page.getByRole("button", { name: "Copy" }).click();
assert.equal(await page.evaluate(() => navigator.clipboard.readText()), secret);
const withKey = await context.request.get(`${base}/api/v1/links`, {
  headers: { authorization: `Bearer ${secret}` },
});
assert.equal(withKey.status(), 200);
await page.getByRole("link", { name: "All keys" }).click();
await shot("keys");
await page.getByRole("button", { name: `Revoke ${secret.slice(0, 12)}` }).click();
await page.getByText("revoked").waitFor();
const revoked = await context.request.get(`${base}/api/v1/links`, {
  headers: { authorization: `Bearer ${secret}` },
});
assert.equal(revoked.status(), 401);

// 6. A form posted without the CSRF token changes nothing.
const forged = await page.evaluate(async () => {
  const response = await fetch("/app/links/new", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: "csrf=00000000000000000000000000000000&url=https%3A%2F%2Fexample.com%2Fforged",
  });
  return response.status;
});
assert.equal(forged, 403);

// 7. Keyboard: the skip link comes first, and every form control has a label.
await page.goto(`${base}/app/links`);
await page.keyboard.press("Tab");
assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
const unlabelled = await page.evaluate(() =>
  [...document.querySelectorAll("input:not([type=hidden]), select")]
    .filter((el) => !el.hidden && !(el.labels && el.labels.length))
    .map((el) => el.name),
);
assert.deepEqual(unlabelled, []);

// 8. On a phone: one column, nothing wider than the screen.
await page.setViewportSize({ width: 375, height: 800 });
await page.goto(`${base}/app/links`);
const overflow = await page.evaluate(
  () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
);
assert.ok(overflow <= 0, `the links page is ${overflow}px wider than a 375px screen`);
await shot("links-mobile");
await page.setViewportSize({ width: 1280, height: 800 });

// 9. Sign out; a wrong password; the right one.
await page.getByRole("button", { name: "Sign out" }).click();
await page.waitForURL(`${base}/app/login`);
await page.goto(`${base}/app/links`);
await page.waitForURL(`${base}/app/login`);
await page.getByLabel("Name").fill("admin");
await page.getByLabel("Password").fill("not the password");
await page.getByRole("button", { name: "Sign in" }).click();
assert.match(await page.getByRole("alert").innerText(), /Wrong name or password/);
await shot("sign-in");
await page.getByLabel("Password").fill(password);
await page.getByRole("button", { name: "Sign in" }).click();
await page.waitForURL(`${base}/app/links`);

await browser.close();
assert.deepEqual(problems, [], "no script errors and nothing blocked by the CSP");
console.log("dashboard browser test: ok");
