//! The console at `GET /`: served without a key, from files embedded in the binary, under a
//! strict Content-Security-Policy; and, in a real browser (Debian's chromium, headless, driven
//! through chromedriver by fantoccini), what a designer does with it. The browser tests are in
//! `needs_chromium` (scripts/test.sh skips them, visibly, without chromium and chromedriver).

use serde_json::Value;

use crate::harness::TestApp;

/// The console and its files need no key, carry the CSP and the hardening headers, and only
/// the embedded files are served.
#[tokio::test]
async fn the_console_is_served_without_a_key_under_a_strict_csp() {
    let app = TestApp::builder().without_connection().start().await;
    let get = |path: &str| {
        let http = app.http.clone();
        let url = format!("{}{path}", app.url);
        async move { http.get(url).send().await.unwrap() }
    };
    let page = get("/").await;
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let html = page.text().await.unwrap();
    assert!(html.contains("<script type=\"module\" src=\"/console/main.js\"></script>"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
        "require-trusted-types-for 'script'",
    ] {
        assert!(csp.contains(directive), "{csp} lacks {directive}");
    }
    assert!(!csp.contains("unsafe-"), "{csp}");
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");

    for (file, kind) in [
        ("main.js", "text/javascript; charset=utf-8"),
        ("card.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    ] {
        let r = get(&format!("/console/{file}")).await;
        assert_eq!(r.status(), 200, "{file}");
        assert_eq!(r.headers()["content-type"], kind, "{file}");
        assert!(r.headers().contains_key("content-security-policy"));
    }
    for missing in [
        "/console/nope.js",
        "/console/..%2Fmod.rs",
        "/console/%2E%2E%2Fmod.rs",
        "/console/",
    ] {
        let r = get(missing).await;
        assert_eq!(r.status(), 404, "{missing}");
        assert_eq!(
            r.headers()["content-type"],
            "application/problem+json",
            "{missing}"
        );
    }
    // The API itself still needs the key.
    assert_eq!(get("/v1/cards").await.status(), 401);
}

/// The browser tests: each starts its own chromedriver and chromium (fresh profile) against its
/// own server and simulated tenant, waits for conditions (never for fixed times) with generous
/// bounds, and saves screenshots under `<target>/test-artifacts/console/`.
mod needs_chromium {
    use std::path::PathBuf;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    use fantoccini::{Client, ClientBuilder, Locator};
    use serde_json::{Value, json};

    use super::text_of;
    use crate::harness::kandji::{FAST_BUDGET, device, devices, id, line, start, start_with, take};
    use crate::harness::{
        API_KEY, Answer, Receiver, TestApp, builtin_card, eventually, operator_cards,
    };

    const CHROMIUM: &str = "/usr/bin/chromium";
    const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
    /// Brings the card's inputs to the top of the window, for screenshots of a result.
    const SCROLL_TO_FORM: &str = "document.querySelector('#try-form fieldset:nth-of-type(2)').scrollIntoView({block: 'start'}); return null";
    /// Generous: this 2-core machine runs several builds at once.
    const WAIT: Duration = Duration::from_secs(60);

    /// A chromium session. chromedriver runs in a process group of its own, which the chromium it
    /// starts joins: dropping the `Browser` (a test that passed or panicked) kills that group, so
    /// no browser outlives its test.
    struct Browser {
        client: Client,
        driver: tokio::process::Child,
        _profile: tempfile::TempDir,
    }

    impl Drop for Browser {
        fn drop(&mut self) {
            if let Some(pid) = self.driver.id() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
            }
        }
    }

    impl std::ops::Deref for Browser {
        type Target = Client;
        fn deref(&self) -> &Client {
            &self.client
        }
    }

    impl Browser {
        async fn start() -> Browser {
            for program in [CHROMIUM, CHROMEDRIVER] {
                assert!(
                    std::path::Path::new(program).exists(),
                    "this test needs {program}: apt-get install -y chromium chromium-driver"
                );
            }
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let driver = tokio::process::Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .expect("chromedriver starts");
            let url = format!("http://127.0.0.1:{port}");
            let http = reqwest::Client::builder().no_proxy().build().unwrap();
            eventually("chromedriver to answer", WAIT, async || {
                match http.get(format!("{url}/status")).send().await {
                    Ok(r) => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|s| s["value"]["ready"] == true),
                    Err(_) => false,
                }
            })
            .await;
            let profile = tempfile::tempdir().unwrap();
            let args = [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--disable-crash-reporter",
                "--disable-breakpad",
                "--window-size=1200,860",
                "--hide-scrollbars",
            ]
            .iter()
            .map(|a| a.to_string())
            .chain([format!("--user-data-dir={}", profile.path().display())])
            .collect::<Vec<_>>();
            let caps = json!({
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
                "timeouts": {"script": 60_000, "pageLoad": 60_000, "implicit": 0},
            });
            let client =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(caps.as_object().unwrap().clone())
                    .connect(&url)
                    .await
                    .expect("a chromium session");
            Browser {
                client,
                driver,
                _profile: profile,
            }
        }

        /// Opens the console and pastes the key, as a person does; returns once the catalog shows.
        async fn open(&self, app: &TestApp) {
            self.goto(&format!("{}/", app.url)).await.unwrap();
            let key = self.element("#api-key").await;
            key.send_keys(API_KEY).await.unwrap();
            key.send_keys("\u{E007}").await.unwrap(); // Enter
            self.until(
                "the catalog",
                "document.querySelectorAll('li.card').length > 40",
            )
            .await;
            // The key is in the tab's session storage only: not in the URL, not persisted.
            let where_key = self
                .js("return [location.href, sessionStorage.getItem('kandji-connector.api-key'), window.localStorage.length]")
                .await;
            assert!(!where_key[0].as_str().unwrap().contains(API_KEY));
            assert_eq!(where_key[1], API_KEY);
            assert_eq!(where_key[2], 0);
        }

        async fn element(&self, css: &str) -> fantoccini::elements::Element {
            self.wait()
                .at_most(WAIT)
                .for_element(Locator::Css(css))
                .await
                .unwrap_or_else(|e| panic!("no {css} within {WAIT:?}: {e}"))
        }

        async fn click(&self, css: &str) {
            self.element(css).await.click().await.unwrap();
        }

        /// Types `keys` into the element.
        async fn type_in(&self, css: &str, keys: &str) {
            self.element(css).await.send_keys(keys).await.unwrap();
        }

        /// Chooses the option labelled `label` of a select.
        async fn choose(&self, css: &str, label: &str) {
            self.element(css)
                .await
                .select_by_label(label)
                .await
                .unwrap();
        }

        async fn js(&self, script: &str) -> Value {
            self.execute(script, vec![]).await.unwrap()
        }

        /// Polls a JavaScript condition until it is true.
        async fn until(&self, what: &str, condition: &str) {
            let script = format!("return Boolean({condition});");
            let deadline = Instant::now() + WAIT;
            loop {
                if self.js(&script).await == Value::Bool(true) {
                    return;
                }
                if Instant::now() > deadline {
                    let shot = self
                        .shoot(&format!("failed-{}", what.replace(' ', "-")))
                        .await;
                    panic!("{what}: `{condition}` not within {WAIT:?} (screenshot {shot:?})");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }

        async fn text(&self, css: &str) -> String {
            self.element(css).await.text().await.unwrap()
        }

        /// A screenshot of the viewport, saved as a test artifact; returns its path.
        async fn shoot(&self, name: &str) -> PathBuf {
            let dir = artifacts();
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{name}.png"));
            let png = self.screenshot().await.unwrap();
            std::fs::write(&path, png).unwrap();
            println!("screenshot: {}", path.display());
            path
        }

        /// No script of a payload ran (its flags are unset) and no markup was parsed from a
        /// value: the page holds no element a payload would create.
        async fn assert_nothing_injected(&self) {
            let found = self
                .js("return [window.__xss_card, window.__xss_device, window.__xss_input, document.querySelectorAll('main img, main script, main b, main iframe').length]")
                .await;
            assert_eq!(
                found,
                json!([null, null, null, 0]),
                "a payload was rendered as markup"
            );
        }
    }

    fn artifacts() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
        target.join("test-artifacts").join("console")
    }

    /// Search, open Lock Device from the keyboard, fill its form, Preview (the POST that Kandji
    /// would get; nothing sent), Run (a typed confirmation first; nothing sent until it
    /// matches), then the outputs, Kandji's status, the time taken and the budget left.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn search_preview_confirm_and_run_lock_device() {
        let app = start().await;
        let mac = id(&device(&app, "Mac"));
        let b = Browser::start().await;
        b.open(&app).await;
        b.shoot("catalog").await;
        let categories = b
            .js("return [...document.querySelectorAll('.category h3')].map(h => h.textContent)")
            .await;
        assert!(
            categories.as_array().unwrap().len() >= 8,
            "grouped by category: {categories}"
        );

        b.type_in("#card-search", "lock").await;
        b.until(
            "the search",
            "document.querySelectorAll('li.card').length < 15",
        )
        .await;
        let shown = b
            .js("return [...document.querySelectorAll('li.card')].map(li => li.textContent.toLowerCase() + ' ' + li.dataset.card)")
            .await;
        let shown = shown.as_array().unwrap();
        assert!(
            shown.iter().all(|c| c.as_str().unwrap().contains("lock")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|c| c.as_str().unwrap().ends_with(" lock_device")),
            "{shown:?}"
        );
        assert!(b.text("#card-count").await.contains("match"));

        // Opened from the keyboard.
        b.type_in("li[data-card='lock_device'] a", "\u{E007}").await;
        b.until(
            "Lock Device's page",
            "document.getElementById('card-title')?.textContent === 'Lock Device'",
        )
        .await;
        assert_eq!(
            b.text("#card-description").await,
            "Send an MDM command to lock a device. For a Mac computer, a 6-digit PIN will be returned."
        );
        assert_labelled(&b).await;
        // Without a device: the server's 422, next to the field it names.
        b.click("#preview-button").await;
        b.until(
            "the missing device",
            "document.getElementById('input-device_id-error').textContent === 'is required' && document.getElementById('input-device_id').getAttribute('aria-invalid') === 'true'",
        )
        .await;
        take(&app, 0);
        b.type_in("#input-device_id", &mac).await;

        b.click("#preview-button").await;
        b.until("the preview", "document.querySelector('#preview pre')")
            .await;
        let request = b.text("#preview figure[data-role='request'] pre").await;
        let want = format!(
            "POST {}/api/v1/devices/{mac}/action/lock",
            app.sim.base_url()
        );
        assert_eq!(request.lines().next(), Some(want.as_str()), "{request}");
        assert!(
            !request.to_lowercase().contains("authorization"),
            "{request}"
        );
        assert!(
            b.text("#preview .nothing-sent")
                .await
                .starts_with("Nothing was sent")
        );
        take(&app, 0);

        b.click("#run-button").await;
        b.until("the confirmation", "!document.getElementById('confirm').hidden && document.activeElement.id === 'confirm-text'")
            .await;
        assert!(!b.element("#confirm-run").await.is_enabled().await.unwrap());
        let typed = b.element("#confirm-text").await;
        typed.send_keys("lock_devic").await.unwrap();
        typed.send_keys("\u{E007}").await.unwrap(); // Enter with the wrong text: nothing
        assert!(!b.element("#confirm-run").await.is_enabled().await.unwrap());
        take(&app, 0);
        typed.send_keys("e").await.unwrap();
        assert!(b.element("#confirm-run").await.is_enabled().await.unwrap());
        typed.send_keys("\u{E007}").await.unwrap();
        b.until("the result", "document.getElementById('kandji-status')")
            .await;
        assert_eq!(b.text("#kandji-status").await, "200");
        assert!(b.text("#run-result .summary").await.contains(" ms"));
        b.until("the budget", "document.getElementById('budget')")
            .await;
        assert!(b.text("#budget").await.contains("left this hour"));
        // The PIN is an output and a secret: masked until shown.
        let pin_row = b.text("tr[data-output='pin']").await;
        assert!(pin_row.contains("••••••••"), "{pin_row}");
        // The command, then the device read back for the 2025 card's device outputs.
        let sent = take(&app, 2);
        assert_eq!(
            line(&sent[0]),
            format!("POST /api/v1/devices/{mac}/action/lock")
        );
        assert_eq!(line(&sent[1]), format!("GET /api/v1/devices/{mac}"));
        b.js(SCROLL_TO_FORM).await;
        b.shoot("card-result").await;
    }

    /// Get Device runs and shows its outputs; a device named like an HTML payload and an
    /// operator card whose description and input hold markup show literally and run nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn get_device_runs_and_markup_is_shown_as_text() {
        let card_markup = r#"<img src=x onerror="window.__xss_card=1"><script>window.__xss_card=2</script><b>Bold</b> & more"#;
        let input_markup = r#"<img src=x onerror="window.__xss_input=1">"#;
        let mut card = builtin_card("send_mdm_blank_push");
        card["id"] = json!("check_markup");
        card["title"] = json!("Check Markup");
        card["description"] = json!(card_markup);
        card["input_schema"]["properties"]["device_id"]["description"] = json!(input_markup);
        let cards = operator_cards(&[&card]);
        let app = TestApp::builder()
            .requests_per_hour(FAST_BUDGET)
            .cards_dir(cards.path())
            .start()
            .await;
        let mac = id(&device(&app, "Mac"));
        let device_markup = r#"<img src=x onerror="window.__xss_device=1">"#;
        let r = app
            .outputs(
                "set_device_name",
                json!({"device_id": mac, "device_name": device_markup}),
                json!({}),
            )
            .await;
        assert_eq!(r["status_code"], 200);
        app.sim.clear_requests();

        let b = Browser::start().await;
        b.open(&app).await;
        b.type_in("#card-search", "markup").await;
        b.until(
            "the operator's card",
            "document.querySelectorAll('li.card').length === 1",
        )
        .await;
        assert_eq!(
            b.text("li[data-card='check_markup'] .card-description")
                .await,
            card_markup
        );
        b.assert_nothing_injected().await;
        b.click("li[data-card='check_markup'] a").await;
        b.until(
            "its page",
            "document.getElementById('card-title')?.textContent === 'Check Markup'",
        )
        .await;
        assert_eq!(b.text("#card-description").await, card_markup);
        assert_eq!(b.text("#input-device_id-help").await, input_markup);
        b.assert_nothing_injected().await;

        b.goto(&format!("{}/#/cards/get_device", app.url))
            .await
            .unwrap();
        b.until(
            "Get Device's page",
            "document.getElementById('card-title')?.textContent === 'Get Device'",
        )
        .await;
        assert_labelled(&b).await;
        b.type_in("#input-device_id", &mac).await;
        b.choose("#option-details", "basic").await;
        b.click("#preview-button").await;
        b.until("the preview", "document.querySelector('#preview pre')")
            .await;
        take(&app, 0);
        b.click("#run-button").await;
        b.until(
            "the outputs",
            "document.querySelector('#outputs tr[data-output=\"device.device_name\"]')",
        )
        .await;
        assert_eq!(b.text("#kandji-status").await, "200");
        assert_eq!(
            b.text("tr[data-output='device.device_name'] td").await,
            device_markup,
            "the name as Kandji has it, as text"
        );
        let serial = text_of(&b.js("return document.querySelector(\"tr[data-output='device.serial_number'] td\").textContent").await);
        assert_eq!(serial, device(&app, "Mac").serial_number.to_string());
        b.assert_nothing_injected().await;
        b.js(SCROLL_TO_FORM).await;
        b.shoot("get-device-result").await;
        let sent = take(&app, 1);
        assert_eq!(line(&sent[0]), format!("GET /api/v1/devices/{mac}"));
    }

    /// A stream started from List Devices' page shows live progress in Streams, is cancelled
    /// there, and lists the record its helper flow refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_started_in_the_console_shows_progress_and_is_cancelled() {
        let app = start_with(devices(1000)).await;
        let receiver = Receiver::start().await;
        // Slow enough to watch: 16 records in flight, each answered after 500 ms (about 30 s
        // for the 1,000 devices).
        receiver.answer_all(Answer::Slow(Duration::from_millis(500)));
        receiver.script(0, vec![Answer::Status(400, "no such user")]);
        let b = Browser::start().await;
        b.open(&app).await;
        b.goto(&format!("{}/#/cards/list_devices", app.url))
            .await
            .unwrap();
        b.until(
            "List Devices' page",
            "document.getElementById('card-title')?.textContent === 'List Devices'",
        )
        .await;
        // Platform is free text (the tenant may manage platforms the card does not list), with
        // the known ones suggested.
        let platform = b
            .js("const i = document.getElementById('input-platform'); return [i.tagName, i.type, [...i.list.options].map(o => o.value)]")
            .await;
        assert_eq!(
            platform,
            json!([
                "INPUT",
                "text",
                ["Mac", "iPhone", "iPad", "AppleTV", "Vision"]
            ])
        );
        b.choose("#option-result_set", "Stream Matching Records")
            .await;
        b.until(
            "the helper flow fields",
            "!document.querySelector('.helper-flow').hidden",
        )
        .await;
        assert_labelled(&b).await;
        b.type_in("#helper-url", &receiver.url()).await;
        b.click("#run-button").await;
        b.until(
            "the stream to start",
            "document.getElementById('stream-started')",
        )
        .await;
        let id = b.text("#stream-started code").await;
        assert!(id.starts_with("str_"), "{id}");

        b.click("#stream-started a").await;
        let row = format!("#streams tr[data-stream='{id}']");
        b.until("progress", &format!("Number(document.querySelector(\"{row} [data-col=record_count]\")?.textContent.replace(/\\D/g, '')) > 0"))
            .await;
        let first = count(&b, &row).await;
        b.until("more progress", &format!("Number(document.querySelector(\"{row} [data-col=record_count]\").textContent.replace(/\\D/g, '')) > {first}"))
            .await;
        assert_eq!(b.text(&format!("{row} [data-col=state]")).await, "running");
        let pages: u64 = b
            .text(&format!("{row} [data-col=pages_fetched]"))
            .await
            .parse()
            .unwrap();
        assert!(pages >= 1);

        b.click(&format!("{row} button.cancel")).await;
        b.until(
            "the cancel",
            &format!(
                "document.querySelector(\"{row} [data-col=state]\").textContent === 'cancelled'"
            ),
        )
        .await;
        let s = app.get(&format!("/v1/streams/{id}")).await.ok();
        assert_eq!(s["state"], "cancelled");
        assert!(s["record_count"].as_u64().unwrap() < 1000, "{s}");

        eventually("the refused record", WAIT, async || {
            app.get(&format!("/v1/streams/{id}")).await.ok()["failed_deliveries"] == 1
        })
        .await;
        b.until(
            "the failure count",
            &format!(
                "document.querySelector(\"{row} [data-col=failed_deliveries]\").textContent === '1'"
            ),
        )
        .await;
        b.click(&format!("{row} button.failures-button")).await;
        b.until(
            "the failures",
            "document.querySelector('#failures table tbody tr')",
        )
        .await;
        let failure = b.text("#failures tbody tr").await;
        assert!(failure.starts_with("0 "), "{failure}");
        assert!(failure.contains("400"), "{failure}");
        b.shoot("streams").await;
    }

    /// Connections: the list with each one's budget and inventory, and a connection added
    /// through the form (its token never shown again).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_are_listed_and_added() {
        let app = start().await;
        let b = Browser::start().await;
        b.open(&app).await;
        b.click("nav a[data-section='connections']").await;
        b.until(
            "the list",
            "document.querySelector('#connections tbody tr')",
        )
        .await;
        let row = b
            .text(&format!("tr[data-connection='{}']", app.connection))
            .await;
        assert!(row.contains("left"), "budget shown: {row}");
        assert_labelled(&b).await;

        fill_connection(&b, "Second tenant", &app.sim.base_url(), &app.sim.token()).await;
        b.choose("#conn-inventory_sync", "true").await;
        b.click("#connection-form button[type=submit]").await;
        b.until(
            "the new connection",
            "document.querySelectorAll('#connections tbody tr').length === 2",
        )
        .await;
        let listed = app.get("/v1/connections").await.ok();
        let added = listed["connections"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "Second tenant")
            .expect("added")
            .clone();
        assert_eq!(added["inventory_sync"], true);
        let page = b.source().await.unwrap();
        assert!(
            !page.contains(&app.sim.token()),
            "the token stays out of the page"
        );
        b.until(
            "its inventory",
            &format!(
                "document.querySelector(\"tr[data-connection='{}']\")",
                added["id"].as_str().unwrap()
            ),
        )
        .await;

        // A wrong token: the form names the field Kandji refused.
        fill_connection(&b, "Third", &app.sim.base_url(), "not-the-token").await;
        b.click("#connection-form button[type=submit]").await;
        b.until(
            "the refusal",
            "document.getElementById('conn-api_token-error').textContent.includes('refused')",
        )
        .await;
    }

    /// Types a connection's name, API URL and token into the connection form.
    async fn fill_connection(b: &Browser, name: &str, api_url: &str, token: &str) {
        b.type_in("#conn-name", name).await;
        b.type_in("#conn-api_url", api_url).await;
        b.type_in("#conn-api_token", token).await;
    }

    async fn count(b: &Browser, row: &str) -> u64 {
        b.text(&format!("{row} [data-col=record_count]"))
            .await
            .chars()
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap()
    }

    /// Every control on the page has a label.
    async fn assert_labelled(b: &Browser) {
        let unlabelled = b
            .js("return [...document.querySelectorAll('main input, main select, main textarea')].filter(e => !e.labels || e.labels.length === 0).map(e => e.id || e.outerHTML)")
            .await;
        assert_eq!(unlabelled, json!([]), "controls without a label");
    }
}

fn text_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}
