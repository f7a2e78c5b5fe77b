//! A real headless Chromium driven through chromedriver (WebDriver) with `fantoccini`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use fantoccini::{Client, ClientBuilder, Locator};

use crate::support::{free_port, wait_for_port};

/// chromedriver plus one browser session; both end on drop / [`Browser::close`].
pub struct Browser {
    driver: Child,
    pub client: Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and a fresh headless Chromium profile.
    pub async fn start() -> Result<Browser> {
        Browser::start_with(&[]).await
    }

    /// As [`Browser::start`], with the network cut off: every connection goes to a proxy
    /// that is not there and no name resolves, so a page that tried to fetch anything would
    /// fail to (the page under test also reports what it loaded).
    pub async fn start_offline() -> Result<Browser> {
        Browser::start_with(&[
            "--proxy-server=http://127.0.0.1:9".to_owned(),
            "--proxy-bypass-list=<-loopback>".to_owned(),
            "--host-resolver-rules=MAP * ~NOTFOUND".to_owned(),
        ])
        .await
    }

    async fn start_with(extra_args: &[String]) -> Result<Browser> {
        let port = free_port("127.0.0.1")?;
        let mut driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn chromedriver")?;
        if let Err(e) = wait_for_port(
            SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(20),
        ) {
            let _ = driver.kill();
            return Err(e.context("chromedriver did not come up"));
        }
        let profile = tempfile::Builder::new()
            .prefix("sekisho-chromium-")
            .tempdir()?;
        let binary = crate::support::which("chromium")
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "/usr/bin/chromium".to_owned());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": binary,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--lang=en-US",
                    // Element screenshots are clipped to the viewport: room for a whole
                    // 1024x768 console screen, one CSS pixel per device pixel.
                    "--window-size=1600,1400", "--force-device-scale-factor=1",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        if let Some(args) = caps
            .get_mut("goog:chromeOptions")
            .and_then(|o| o.get_mut("args"))
            .and_then(|a| a.as_array_mut())
        {
            args.extend(extra_args.iter().cloned().map(serde_json::Value::from));
        }
        // Sekisho's web identity is self-signed in the test instance.
        caps.insert("acceptInsecureCerts".into(), serde_json::json!(true));
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = match ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => c,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(anyhow::anyhow!("cannot start a chromium session: {e}"));
            }
        };
        Ok(Browser {
            driver,
            client,
            _profile: profile,
        })
    }

    /// The page's HTML.
    pub async fn source(&self) -> Result<String> {
        Ok(self.client.source().await?)
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) -> Result<()> {
        Ok(self.client.goto(url).await?)
    }

    /// Types into the element with `id`.
    pub async fn type_into(&self, id: &str, text: &str) -> Result<()> {
        let e = self.client.find(Locator::Id(id)).await?;
        e.clear().await?;
        e.send_keys(text).await?;
        Ok(())
    }

    /// Clicks the element with `id`.
    pub async fn click(&self, id: &str) -> Result<()> {
        self.client.find(Locator::Id(id)).await?.click().await?;
        Ok(())
    }

    /// The current URL's path and query.
    pub async fn path(&self) -> Result<String> {
        let url = self.client.current_url().await?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        })
    }

    /// Sizes the window (CSS pixels; the device scale factor is 1).
    pub async fn window(&self, width: u32, height: u32) -> Result<()> {
        Ok(self.client.set_window_size(width, height).await?)
    }

    /// Saves a screenshot of the window as `target/web-screenshots/NAME.png` (the test output
    /// a reviewer looks at) and returns its path.
    pub async fn screenshot(&self, name: &str) -> Result<std::path::PathBuf> {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.client.screenshot().await?)
            .with_context(|| format!("write {}", path.display()))?;
        Ok(path)
    }

    /// The text a reader sees on the page (`innerText` of the body, plus every `title`,
    /// `placeholder`, `aria-label` and button value, which are read too), leaving out what is
    /// marked as another language (the language switch names the other language in itself).
    pub async fn visible_text(&self) -> Result<String> {
        let v = self
            .client
            .execute(
                "const lang = document.documentElement.lang;\
                 const other = [...document.querySelectorAll('body [lang]')].filter(e => e.lang !== lang);\
                 const shown = other.map(e => e.style.display);\
                 for (const e of other) e.style.display = 'none';\
                 const parts = [document.title, document.body.innerText];\
                 other.forEach((e, i) => { e.style.display = shown[i]; });\
                 for (const e of document.querySelectorAll('[title],[placeholder],[aria-label],input[type=submit]')) {\
                   for (const a of ['title', 'placeholder', 'aria-label', 'value']) {\
                     if (a === 'value' && e.type !== 'submit') continue;\
                     const t = e.getAttribute(a); if (t) parts.push(t);\
                   }\
                 }\
                 return parts.join('\\n');",
                vec![],
            )
            .await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Ends the browser session and chromedriver.
    pub async fn close(mut self) -> Result<()> {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        Ok(())
    }
}

/// Where [`Browser::screenshot`] writes: `target/web-screenshots` (or under `CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| crate::support::workspace_root().join("target"))
        .join("web-screenshots")
}

/// The English words in `text`: runs of two or more ASCII letters, except those `allowed`
/// (names, ids, addresses and product names the page shows as they are). A Japanese page
/// must have none; the caller passes what it put on the page itself.
pub fn english_words(text: &str, allowed: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for token in text.split(|c: char| !(c.is_ascii_alphanumeric() || "-_.:/@".contains(c))) {
        if token.is_empty() || allowed.iter().any(|a| a.eq_ignore_ascii_case(token)) {
            continue;
        }
        // Ids, addresses, times and sizes carry digits; what is left of letters only is a word.
        if token.chars().any(|c| c.is_ascii_digit()) {
            continue;
        }
        for word in token.split(|c: char| !c.is_ascii_alphabetic()) {
            if word.len() >= 2 && !allowed.iter().any(|a| a.eq_ignore_ascii_case(word)) {
                found.push(word.to_owned());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
