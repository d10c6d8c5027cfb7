import FunctionRuntime
import HTTPTransport
import Logging
import MetaTenancy
import MetaWebhooks

/// `GET /connect?token=`: the page a business opens to connect one location's accounts,
/// reached only through the `connectUrl` an authorised `auth-url` call mints (a signed token,
/// bound to the business and the location, good for 30 minutes). Without a valid token it
/// shows nothing of any business and issues no state. With one: the location's current
/// connections in plain words, "Connect Instagram / Facebook Page" (the Facebook Login flow,
/// with a fresh state) and "Connect WhatsApp" (Embedded Signup through Meta's JavaScript SDK,
/// posting its result and another fresh state to the signup route). Plain HTML and a little
/// JavaScript, no build step; a Content-Security-Policy allows Meta's SDK and nothing else.
public struct ConnectPageHandler: Sendable {
    public let config: OAuthConfig
    public let directory: TenantDirectory
    public let clock: WallClock
    /// Business Login for Instagram, when configured: a third button, for an Instagram
    /// professional account without a Facebook Page.
    public let instagram: InstagramLogin?

    public static let path = "/connect"

    public init(config: OAuthConfig, directory: TenantDirectory, instagram: InstagramLogin? = nil, clock: WallClock = .system) {
        self.config = config
        self.directory = directory
        self.instagram = instagram
        self.clock = clock
    }

    public func handle(_ request: HTTPRequest, logger: Logger) async -> HTTPResponse {
        guard let token = request.queryValue("token"), token.utf8.count <= 2048,
            let link = config.connectLinkState(token, now: clock.epochSeconds())
        else {
            logger.info("connect page refused: no valid link")
            return Self.page(
                403, title: "This link cannot be used",
                body: "<p>This connection link is not valid or has expired. Ask for a new link where you got this one.</p>", nonce: nil)
        }
        let tenant = Tenant(businessId: link.businessId, locationId: link.locationId)
        let linkExpiresAt = link.expiresAt
        let connection: TenantCredentials?
        do {
            connection = try await directory.credentials(tenant: tenant)
        } catch {
            return Self.page(
                503, title: "Please try again", body: "<p>Your connections could not be read just now. Reload this page in a moment.</p>", nonce: nil)
        }
        let now = clock.epochSeconds()
        // The page's states live as long as the link that opened it (Embedded Signup, with the
        // business's details and an SMS code, often takes longer than a state's 10 minutes),
        // and never less than a state's own lifetime.
        let stateExpiresAt = max(now + config.stateLifetimeSeconds, linkExpiresAt)
        func state() -> OAuthState {
            OAuthState(
                businessId: tenant.businessId, locationId: tenant.locationId, pageId: nil, redirectUri: config.redirectURI,
                nonce: OAuthState.randomNonce(), expiresAt: stateExpiresAt, businessName: link.businessName, locationName: link.locationName)
        }
        let nonce = OAuthState.randomNonce()
        var items: [String] = []
        if let connection, connection.isActive || connection.inactiveReason != nil {
            // Named as the person knows them; the id where Meta gave no name.
            if let page = connection.pageId { items.append("Facebook Page \(Self.escape(connection.pageName.map { "“\($0)”" } ?? page))") }
            if let instagram = connection.instagramAccountId {
                items.append(
                    "Instagram account \(Self.escape(connection.instagramUsername.map { "@\($0)" } ?? instagram))"
                        + (connection.usesInstagramLogin ? " (Instagram Login)" : ""))
            }
            if let phone = connection.phoneNumberId {
                items.append(
                    "WhatsApp number \(Self.escape(connection.displayPhoneNumber ?? phone))"
                        + (connection.token(for: .whatsapp) == nil ? " (connect WhatsApp to send from it)" : ""))
            }
            if !connection.isActive {
                items.append("Not answering: \(Self.escape(connection.inactiveReason ?? "inactive")). Connect again below.")
            }
        }
        let list =
            items.isEmpty
            ? #"<li id="no-connections">Nothing is connected yet.</li>"#
            : items.map { "<li>\($0)</li>" }.joined()
        let sdkOrigin = OAuthConfig.origin(of: config.javascriptSDKURL)
        let settings = JSON.dictionary([
            "appId": .string(config.appId), "graphVersion": .string(config.graphVersion),
            "configId": config.whatsappConfigId.map { .string($0) } ?? .null, "signupState": .string(state().signed(secret: config.stateSecret)),
            "signupPath": .string(WhatsAppSignupHandler.path), "confirmPath": .string(ConsentHandler.confirmPath),
            "messageOrigins": .array(["https://www.facebook.com", "https://web.facebook.com", .string(sdkOrigin)]),
        ])
        // Inside a <script> element: no "<" may end it early.
        let settingsText = String(decoding: settings.encoded(), as: UTF8.self).replacing("<", with: "\\u003c")
        let whatsapp =
            config.whatsappConfigId == nil
            ? "<p>WhatsApp is not offered here yet (no Embedded Signup configuration).</p>"
            : #"<p><button id="connect-whatsapp" type="button" disabled>Connect WhatsApp</button></p>"#
        let body = """
            <p>Business <strong id="business">\(Self.escape(link.businessName ?? tenant.businessId))</strong>, location <strong id="location">\(Self.escape(link.locationName ?? tenant.locationId))</strong>.</p>
            <section aria-labelledby="now"><h2 id="now">Connected now</h2><ul id="connections">\(list)</ul></section>
            <section aria-labelledby="add"><h2 id="add">Connect an account</h2>
            <p><a id="connect-facebook" class="button" href="\(Self.escape(config.dialogURL(state: state())))">Connect Instagram / Facebook Page</a></p>
            \(instagramButton(link: link, now: now))
            \(whatsapp)
            <p id="result" role="status" aria-live="polite"></p></section>
            <script type="application/json" id="connect-settings">\(settingsText)</script>
            <script nonce="\(nonce)">\(Self.script)</script>
            <script async defer crossorigin="anonymous" src="\(Self.escape(config.javascriptSDKURL))" nonce="\(nonce)"></script>
            """
        return Self.page(200, title: "Connect your accounts", body: body, nonce: nonce, sdkOrigin: sdkOrigin)
    }

    /// "Connect Instagram (no Facebook Page)": Instagram's authorization window with a fresh
    /// state of its own flow.
    func instagramButton(link: OAuthState, now: Int64) -> String {
        guard let instagram else { return "" }
        var state = instagram.newState(businessId: link.businessId, locationId: link.locationId, now: now)
        state.businessName = link.businessName
        state.locationName = link.locationName
        let url = instagram.authorizeURL(state: state)
        return #"<p><a id="connect-instagram" class="button" href="\#(Self.escape(url))">Connect Instagram (no Facebook Page)</a></p>"#
    }

    static func escape(_ text: String) -> String {
        text.replacing("&", with: "&amp;").replacing("<", with: "&lt;").replacing(">", with: "&gt;").replacing("\"", with: "&quot;")
            .replacing("'", with: "&#39;")
    }

    static func page(_ status: Int, title: String, body: String, nonce scriptNonce: String?, sdkOrigin: String = "") -> HTTPResponse {
        let nonce = scriptNonce ?? OAuthState.randomNonce()
        let html = """
            <!doctype html>
            <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(escape(title))</title>
            <style nonce="\(nonce)">body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
            .button,button{display:inline-block;padding:.6rem 1rem;border-radius:.4rem;border:1px solid #1f4fa3;background:#2b63c6;color:#fff;text-decoration:none;font-size:1rem;cursor:pointer}
            button[disabled]{opacity:.5;cursor:default}.ok{color:#0a6b2d}.error{color:#a11}</style></head>
            <body><main><h1>\(escape(title))</h1>\(body)</main></body></html>
            """
        var policy = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; img-src 'self' data:; style-src 'nonce-\(nonce)'"
        if scriptNonce != nil {
            policy +=
                "; script-src 'nonce-\(nonce)' \(sdkOrigin) https://connect.facebook.net"
                + "; connect-src 'self' https://*.facebook.com https://*.facebook.net; frame-src https://*.facebook.com \(sdkOrigin)"
        }
        return HTTPResponse(
            status: status,
            headers: [
                "Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store", "Content-Security-Policy": policy,
                "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
            ], body: html)
    }

    /// Embedded Signup in the browser (Meta for Developers, "Embedded Signup: Implementation"):
    /// FB.login with the configuration id and `response_type: code`; the popup's session-info
    /// message (`WA_EMBEDDED_SIGNUP`: `FINISH` (or `FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING`)
    /// with `waba_id` and `phone_number_id`, `FINISH_ONLY_WABA` without a number, `CANCEL`,
    /// `ERROR`) from Meta's origin; both the code and the ids go to the signup route. Every
    /// outcome is said in plain words, a code that comes without a session message too.
    static let script = """
        (function () {
          "use strict";
          var settings = JSON.parse(document.getElementById("connect-settings").textContent);
          var result = document.getElementById("result");
          var button = document.getElementById("connect-whatsapp");
          var session = null, code = null, sent = false, reported = false, attempt = 0;
          function show(text, ok) { result.textContent = text; result.className = ok ? "ok" : "error"; }
          function submit() {
            if (!session || !code || sent) { return; }
            sent = true;
            show("Connecting your WhatsApp number…", true);
            fetch(settings.signupPath, {
              method: "POST", headers: { "Content-Type": "application/json" },
              body: JSON.stringify({ state: settings.signupState, code: code, wabaId: session.wabaId, phoneNumberId: session.phoneNumberId })
            }).then(function (response) {
              return response.json().then(function (body) { return { ok: response.ok, body: body }; });
            }).then(function (answer) {
              if (answer.ok && answer.body.status === "confirm") {
                ask(answer.body);
              } else {
                outcome(answer);
              }
            }).catch(function () { show("The server could not be reached. Reload the page to try again.", false); });
          }
          function outcome(answer) {
            if (answer.ok && answer.body.status === "connected") {
              show("WhatsApp number " + (answer.body.displayPhoneNumber || answer.body.phoneNumberId) + " is connected.", true);
              var none = document.getElementById("no-connections");
              if (none) { none.remove(); }
              var item = document.createElement("li");
              item.textContent = "WhatsApp number " + (answer.body.displayPhoneNumber || answer.body.phoneNumberId);
              document.getElementById("connections").appendChild(item);
              if (button) { button.disabled = true; }
            } else if (answer.ok && answer.body.status === "cancelled") {
              show("You cancelled: nothing was connected.", false);
            } else {
              show("WhatsApp could not be connected: " + (answer.body.message || answer.body.error || "unknown error") + ". Reload the page to try again.", false);
            }
          }
          // The person confirms which number joins which business and location before anything is stored.
          function ask(question) {
            show(question.question, true);
            [["confirm", "Connect", "confirm-whatsapp"], ["cancel", "Cancel", "cancel-whatsapp"]].forEach(function (choice) {
              var answerButton = document.createElement("button");
              answerButton.type = "button"; answerButton.id = choice[2]; answerButton.textContent = choice[1];
              answerButton.addEventListener("click", function () {
                result.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
                fetch(settings.confirmPath, {
                  method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" },
                  body: "consent=" + encodeURIComponent(question.consent) + "&decision=" + choice[0]
                }).then(function (response) {
                  return response.json().then(function (body) { return { ok: response.ok, body: body }; });
                }).then(outcome).catch(function () { show("The server could not be reached. Reload the page to try again.", false); });
              });
              result.appendChild(document.createTextNode(" "));
              result.appendChild(answerButton);
            });
          }
          window.addEventListener("message", function (event) {
            if (settings.messageOrigins.indexOf(event.origin) < 0) { return; }
            var data;
            try { data = typeof event.data === "string" ? JSON.parse(event.data) : event.data; } catch (e) { return; }
            if (!data || data.type !== "WA_EMBEDDED_SIGNUP") { return; }
            if ((data.event === "FINISH" || data.event === "FINISH_WHATSAPP_BUSINESS_APP_ONBOARDING") && data.data && data.data.waba_id && data.data.phone_number_id) {
              session = { wabaId: String(data.data.waba_id), phoneNumberId: String(data.data.phone_number_id) };
              submit();
            } else if (data.event === "FINISH_ONLY_WABA") {
              reported = true;
              show("The WhatsApp signup finished without a phone number, so nothing was connected. Add a number to your WhatsApp Business account in WhatsApp Manager, then connect again.", false);
            } else if (data.event === "CANCEL") {
              reported = true;
              show("The WhatsApp signup was closed before the end" + (data.data && data.data.current_step ? " (at " + data.data.current_step + ")" : "") + ". Nothing was connected.", false);
            } else if (data.event === "ERROR") {
              reported = true;
              show("Meta reported a problem during the WhatsApp signup: " + ((data.data && data.data.error_message) || "unknown error") + ".", false);
            }
          });
          window.fbAsyncInit = function () {
            FB.init({ appId: settings.appId, autoLogAppEvents: true, xfbml: false, version: settings.graphVersion });
            if (button && settings.configId) { button.disabled = false; }
          };
          if (button) {
            button.addEventListener("click", function () {
              // Each press is a signup of its own: nothing of an earlier one is sent with it.
              reported = false; session = null; code = null; sent = false; attempt += 1;
              var mine = attempt;
              FB.login(function (response) {
                if (response && response.authResponse && response.authResponse.code) {
                  code = response.authResponse.code;
                  submit();
                  // Meta's session message names the number; a code without it cannot be used.
                  setTimeout(function () {
                    if (mine === attempt && !session && !sent && !reported) {
                      show("Meta finished the signup without saying which number was added, so nothing was connected. Reload the page and try again.", false);
                    }
                  }, 3000);
                } else if (!session && !reported) {
                  show("The WhatsApp signup was not finished. Nothing was connected.", false);
                }
              }, { config_id: settings.configId, response_type: "code", override_default_response_type: true, extras: { setup: {} } });
            });
          }
        })();
        """

    public var function: HTTPFunction {
        HTTPFunction { request, context in await self.handle(request, logger: context.logger) }
    }
}
