#!/usr/bin/env python3
"""The connect page in a real browser (headless Chromium through chromium-driver, driven by
Selenium), against `serve` and the stand-ins: the Graph API stand-in (Tests/graph-standin,
which plays Meta's Embedded Signup exchanges for the code `local-signup-code`) and a stand-in
for Meta's JavaScript SDK served here, whose FB.login opens a popup that answers as Meta's
does: the `WA_EMBEDDED_SIGNUP` session-info message, then the login response with a code.

Checks what a business would: a page without a valid link shows nothing; with one, both
buttons and the location's connections; a cancelled signup, a refused one and a finished one
each say so in plain words; the number then appears in the list, also after a reload; no
secret is ever on the page. And what the person connecting a Page sees (issue 38): after
Facebook Login, a page naming the Page, its Instagram account and the business and location
they would join; nothing is stored before "Connect", nor after "Cancel"; a replayed answer
and one posted from another site are refused.

Usage: Tests/browser/connect_page.py BIN_DIR   (run by scripts/test)
"""
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from selenium.common.exceptions import NoSuchElementException, NoSuchWindowException, StaleElementReferenceException
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_SECRET = "browser-app-secret"
API_KEY = "browser-test-key-0123456789abcdef"
SCENARIO = {"name": "success"}
WABA, PHONE = "102290129340398", "106540352242923"

SDK = r"""
(function () {
  var origin = new URL(document.currentScript.src).origin;
  var pending = null;
  window.addEventListener("message", function (event) {
    if (event.origin !== origin || !event.data || event.data.type !== "STANDIN_LOGIN" || !pending) { return; }
    var callback = pending; pending = null;
    callback(event.data.code ? { status: "connected", authResponse: { code: event.data.code } } : { status: "unknown", authResponse: null });
  });
  window.FB = {
    init: function (options) { window.FB.options = options; },
    login: function (callback, options) {
      pending = callback;
      window.open(origin + "/dialog?config_id=" + encodeURIComponent(options.config_id) + "&response_type=" + options.response_type, "es", "width=500,height=600");
    }
  };
  setTimeout(function () { if (window.fbAsyncInit) { window.fbAsyncInit(); } }, 0);
})();
"""

DIALOG = r"""<!doctype html><html><body><p>Meta's Embedded Signup (stand-in)</p><script>
var scenario = %s;
function post(message) { window.opener.postMessage(message, "*"); }
if (new URLSearchParams(location.search).get("config_id") !== "standin-config" || new URLSearchParams(location.search).get("response_type") !== "code") {
  post(JSON.stringify({ type: "WA_EMBEDDED_SIGNUP", event: "ERROR", data: { error_message: "unexpected FB.login options" } }));
  post({ type: "STANDIN_LOGIN" });
} else if (scenario.name === "only-waba") {
  post(JSON.stringify({ type: "WA_EMBEDDED_SIGNUP", event: "FINISH_ONLY_WABA", data: { waba_id: "%s" } }));
  post({ type: "STANDIN_LOGIN", code: "local-signup-code" });
} else if (scenario.name === "no-session") {
  post({ type: "STANDIN_LOGIN", code: "local-signup-code" });
} else if (scenario.name === "cancel") {
  post(JSON.stringify({ type: "WA_EMBEDDED_SIGNUP", event: "CANCEL", data: { current_step: "PHONE_NUMBER_SETUP" } }));
  post({ type: "STANDIN_LOGIN" });
} else {
  post(JSON.stringify({ type: "WA_EMBEDDED_SIGNUP", event: "FINISH", data: { phone_number_id: "%s", waba_id: "%s" } }));
  post({ type: "STANDIN_LOGIN", code: scenario.name === "refused" ? "a-code-meta-never-issued" : "local-signup-code" });
}
setTimeout(function () { window.close(); }, 50);
</script></body></html>"""


# A page of another site that posts a consent answer to the product (a cross-site request).
CROSS_SITE = """<!doctype html><html><body><form id="f" method="post" action="%s">
<input type="hidden" name="consent" value="%s"><input type="hidden" name="decision" value="confirm"></form>
<script>document.getElementById("f").submit();</script></body></html>"""


class SDKStandIn(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        parsed = urllib.parse.urlparse(self.path)
        path = parsed.path
        if path == "/sdk.js":
            body, kind = SDK.encode(), "text/javascript"
        elif path == "/dialog":
            body, kind = (DIALOG % (json.dumps(SCENARIO), WABA, PHONE, WABA)).encode(), "text/html"
        elif path == "/cross-site":
            query = urllib.parse.parse_qs(parsed.query)
            body, kind = (CROSS_SITE % (query["target"][0], query["consent"][0])).encode(), "text/html"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Access-Control-Allow-Origin", "*")  # as Meta's CDN answers the SDK
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def d_text(driver):
    return driver.find_element(By.ID, "result").text


def fail(message):
    print(f"FAIL {message}", file=sys.stderr)
    sys.exit(1)


def ok(message):
    print(f"ok   {message}")


def main():
    bin_dir = sys.argv[1]
    data = tempfile.mkdtemp(prefix="connect-page-")
    for name in os.listdir(os.path.join(ROOT, "scripts/local-tenant")):
        shutil.copy(os.path.join(ROOT, "scripts/local-tenant", name), data)
    sdk = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SDKStandIn)
    threading.Thread(target=sdk.serve_forever, daemon=True).start()
    sdk_origin = f"http://127.0.0.1:{sdk.server_address[1]}"

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The stand-in's Facebook Login takes codes for this redirect URI only, as Meta does.
    environment = dict(os.environ, META_APP_SECRET=APP_SECRET, META_APP_ID="100000000000001", META_REDIRECT_URI=f"{base}/external/meta/callback")
    standin = subprocess.Popen([os.path.join(bin_dir, "graph-standin")], env=environment, stdout=subprocess.PIPE, text=True)
    graph = standin.stdout.readline().strip()
    environment.update(
        PORT=str(port), HOST="127.0.0.1", META_WEBHOOK_VERIFY_TOKEN="browser-verify-token", OAUTH_STATE_SECRET="browser-state-secret",
        META_REDIRECT_URI=f"{base}/external/meta/callback", SERVE_API_KEY=API_KEY, KV_BACKEND="file", KV_FILE_DIR=data,
        META_GRAPH_API_BASE_URL=graph, META_WHATSAPP_CONFIG_ID="standin-config", META_JS_SDK_URL=f"{sdk_origin}/sdk.js", LOG_LEVEL="warning")
    serve = subprocess.Popen([os.path.join(bin_dir, "serve")], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = None
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"{base}/webhooks/meta?hub.mode=subscribe&hub.verify_token=browser-verify-token&hub.challenge=1", timeout=1)
                break
            except Exception:
                if serve.poll() is not None:
                    fail("serve exited")
                time.sleep(0.05)
        request = urllib.request.Request(f"{base}/external/meta/auth-url?businessId=B0500005&locationId=L-shop",
                                         headers={"Authorization": f"Bearer {API_KEY}"})
        answer = json.load(urllib.request.urlopen(request, timeout=5))
        connect_url = answer["connectUrl"]
        if not connect_url.startswith(f"{base}/connect?token="):
            fail(f"auth-url's connectUrl: {connect_url}")

        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1000,900"]:
            options.add_argument(argument)
        driver = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=options)
        wait = WebDriverWait(driver, 15)

        # No link, a forged one: nothing of any business, no buttons.
        for url in [f"{base}/connect", connect_url[:-3] + "abc"]:
            driver.get(url)
            if driver.find_element(By.TAG_NAME, "h1").text != "This link cannot be used":
                fail(f"{url} showed: {driver.find_element(By.TAG_NAME, 'h1').text}")
            if driver.find_elements(By.ID, "connect-whatsapp") or driver.find_elements(By.ID, "connect-facebook") or "B0500005" in driver.page_source:
                fail("a page without a valid link shows a business or its buttons")
        ok("without a valid connect link the page shows nothing of any business")

        def open_page():
            driver.get(connect_url)
            try:
                wait.until(expected_conditions.element_to_be_clickable((By.ID, "connect-whatsapp")))
            except Exception:
                fail(f"the WhatsApp button never became usable; the browser said: {driver.get_log('browser')[-4:]}")
            main_window = driver.current_window_handle
            return main_window

        main_window = open_page()
        if "B0500005" not in driver.page_source or "L-shop" not in driver.page_source:
            fail("the page does not say which business and location it connects")
        if driver.find_element(By.ID, "connections").text != "Nothing is connected yet.":
            fail(f"connections: {driver.find_element(By.ID, 'connections').text}")
        login = driver.find_element(By.ID, "connect-facebook").get_attribute("href")
        query = urllib.parse.parse_qs(urllib.parse.urlparse(login).query)
        if not login.startswith("https://www.facebook.com/v25.0/dialog/oauth?") or query.get("client_id") != ["100000000000001"] or not query.get("state"):
            fail(f"the Facebook button: {login}")
        ok("with a link: the business and location, nothing connected yet, both buttons (Facebook Login with a state)")

        def click_and_wait(scenario, expected):
            SCENARIO["name"] = scenario
            driver.find_element(By.ID, "connect-whatsapp").click()
            try:
                wait.until(lambda d: expected in d.find_element(By.ID, "result").text)
            except Exception:
                driver.switch_to.window(main_window)
                fail(f"{scenario}: the page said {d_text(driver)!r}; the browser said {driver.get_log('browser')[-4:]}")
            for handle in driver.window_handles:
                if handle != main_window:
                    # A popup the page's script closes itself may be gone between the listing
                    # and the switch: that is the end it was meant to reach anyway.
                    try:
                        driver.switch_to.window(handle)
                        driver.close()
                    except NoSuchWindowException:
                        pass
            driver.switch_to.window(main_window)
            return driver.find_element(By.ID, "result")

        result = click_and_wait("cancel", "closed before the end")
        if "error" not in result.get_attribute("class") or driver.find_element(By.ID, "connections").text != "Nothing is connected yet.":
            fail("a cancelled signup")
        ok("a cancelled signup says so and connects nothing")

        result = click_and_wait("only-waba", "without a phone number")
        if driver.find_element(By.ID, "connections").text != "Nothing is connected yet.":
            fail("a signup without a number connected something")
        ok(f"a signup that ends without a number says so: {result.text!r}")

        result = click_and_wait("no-session", "without saying which number")
        if driver.find_element(By.ID, "connections").text != "Nothing is connected yet.":
            fail("a code without a session message connected something")
        ok(f"a code without Meta's session message says so: {result.text!r}")

        result = click_and_wait("refused", "could not be connected")
        if "exchange the code" not in result.text:
            fail(f"a refused signup says: {result.text}")
        ok(f"a signup Meta refuses says why: {result.text!r}")

        # A finished signup asks first: which number joins which business and location.
        main_window = open_page()
        result = click_and_wait("success", "Connect the WhatsApp number")
        if "+1 555-078-3882" not in result.text or "B0500005" not in result.text or "L-shop" not in result.text:
            fail(f"the question does not name the number, the business and the location: {result.text!r}")
        driver.find_element(By.ID, "cancel-whatsapp").click()
        wait.until(lambda d: "nothing was connected" in d_text(d))
        if driver.find_element(By.ID, "connections").text != "Nothing is connected yet.":
            fail("a signup the person cancelled connected the number")
        main_window = open_page()
        if driver.find_element(By.ID, "connections").text != "Nothing is connected yet.":
            fail("after a cancelled signup and a reload, something is connected")
        ok("a finished signup asks which number joins which business; Cancel connects nothing")

        main_window = open_page()
        result = click_and_wait("success", "Connect the WhatsApp number")
        driver.find_element(By.ID, "confirm-whatsapp").click()
        try:
            wait.until(lambda d: "is connected" in d_text(d))
        except Exception:
            fail(f"after Connect the page said {d_text(driver)!r}; the browser said {driver.get_log('browser')[-3:]}")
        result = driver.find_element(By.ID, "result")
        if "+1 555-078-3882" not in result.text or "ok" not in result.get_attribute("class"):
            fail(f"a finished signup says: {result.text}")
        if "WhatsApp number +1 555-078-3882" not in driver.find_element(By.ID, "connections").text:
            fail(f"the connected number is not in the list as it is dialled: {driver.find_element(By.ID, 'connections').text}")
        ok(f"a finished signup connects the number: {result.text!r}")

        main_window = open_page()
        if "WhatsApp number +1 555-078-3882" not in driver.find_element(By.ID, "connections").text:
            fail(f"after a reload: {driver.find_element(By.ID, 'connections').text}")
        for secret in [APP_SECRET, "local-business-token", "browser-state-secret", API_KEY]:
            if secret in driver.page_source:
                fail("a secret is on the page")
        ok("after a reload the list shows the number; no secret is on the page")

        # The person confirms what joins what (issue 38).
        def connections(business):
            request = urllib.request.Request(f"{base}/external/meta/connections?businessId={business}",
                                             headers={"Authorization": f"Bearer {API_KEY}"})
            return json.load(urllib.request.urlopen(request, timeout=10)).get("connections", [])

        def consent_page():
            query = urllib.parse.urlencode({"businessId": "B0600006", "locationId": "L-cluj", "businessName": "Salon Ana",
                                            "locationName": "Cluj – centru"})
            request = urllib.request.Request(f"{base}/external/meta/auth-url?{query}", headers={"Authorization": f"Bearer {API_KEY}"})
            dialog = json.load(urllib.request.urlopen(request, timeout=5))["url"]
            state = urllib.parse.parse_qs(urllib.parse.urlparse(dialog).query)["state"][0]
            # Where Meta's dialog sends the person back.
            driver.get(f"{base}/external/meta/callback?" + urllib.parse.urlencode({"code": "local-oauth-code-2", "state": state}))
            mains = driver.find_elements(By.TAG_NAME, "main")
            if not mains:
                fail(f"the callback did not ask the person: {driver.find_element(By.TAG_NAME, 'body').text[:400]!r}")
            text = mains[0].text
            for words in ["Cofetăria Dulce", "@cofetaria.dulce", "Salon Ana", "Cluj – centru"]:
                if words not in text:
                    fail(f"the consent page does not name {words!r}: {text!r}")
            return driver.find_element(By.NAME, "consent").get_attribute("value")

        consent_page()
        if connections("B0600006"):
            fail("a connection was stored before the person confirmed it")
        ok("after Facebook Login the person is asked, with the Page, its Instagram account, the business and location named; nothing stored yet")

        # A form's answer replaces the page: an element read while it does is stale, not a failure.
        navigating = WebDriverWait(driver, 15, ignored_exceptions=[NoSuchElementException, StaleElementReferenceException])

        def answered(words):
            try:
                navigating.until(lambda d: words in d.find_element(By.TAG_NAME, "body").text)
            except Exception:
                fail(f"expected {words!r}, the page said {driver.find_element(By.TAG_NAME, 'body').text[:400]!r}; "
                     f"the browser said {driver.get_log('browser')[-3:]}")

        driver.find_element(By.ID, "cancel").click()
        answered("cancelled")
        if connections("B0600006"):
            fail("a cancelled consent stored a connection")
        ok("Cancel connects nothing")

        nonce = consent_page()
        target = f"{base}/external/meta/connect/confirm"
        driver.get(f"{sdk_origin}/cross-site?" + urllib.parse.urlencode({"target": target, "consent": nonce}))
        answered("Not confirmed")
        if connections("B0600006"):
            fail("an answer posted from another site connected the Page")
        ok("an answer posted from another site is refused")

        nonce = consent_page()
        driver.find_element(By.ID, "confirm").click()
        answered("connected")
        stored = connections("B0600006")
        if len(stored) != 1 or not stored[0].get("active"):
            fail(f"Connect did not store the connection: {stored}")
        # The same answer again, from our own origin (the answer's page is ours): refused, once
        # means once.
        driver.execute_script(
            "var f = document.createElement('form'); f.method = 'post'; f.action = arguments[0];"
            "for (var [n, v] of [['consent', arguments[1]], ['decision', 'cancel']]) {"
            "  var i = document.createElement('input'); i.type = 'hidden'; i.name = n; i.value = v; f.appendChild(i); }"
            "document.body.appendChild(f); f.submit();", target, nonce)
        answered("already answered")
        if len(connections("B0600006")) != 1:
            fail("a replayed answer changed the connection")
        ok("Connect stores the connection; the same answer again is refused")
    finally:
        if driver:
            driver.quit()
        serve.terminate()
        standin.terminate()
        sdk.shutdown()
        shutil.rmtree(data, ignore_errors=True)
    print("connect page: all browser checks passed")


if __name__ == "__main__":
    main()
