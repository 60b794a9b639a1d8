//! Rendering: explanations + handlebars templates → the text and HTML of a notification.
//!
//! A template set is the built-in templates overlaid by the files of zero or more
//! template directories: `NAME.txt.hbs` and `NAME.html.hbs` (or `NAME.LANG.txt.hbs` for
//! one language) and `lang/LANG.toml` with the strings, each a small template itself that
//! the layouts call as `{{t "key"}}` or `{{t "key" this}}`. Everything is compiled once.
//! The HTML registry escapes every value; the text registry escapes nothing. Both run in
//! strict mode, so a misspelt name is an error (and the message passes unchanged).

use crate::config::Link;
use anyhow::{bail, Context as _, Result};
use handlebars::{BlockContext, Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderErrorReason, Renderable, Template};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    ("bounce.txt.hbs", include_str!("../templates/bounce.txt.hbs")),
    ("bounce.html.hbs", include_str!("../templates/bounce.html.hbs")),
];

const BUILTIN_STRINGS: &[(&str, &str)] = &[
    ("en", include_str!("../templates/lang/en.toml")),
    ("de", include_str!("../templates/lang/de.toml")),
    ("fr", include_str!("../templates/lang/fr.toml")),
    ("es", include_str!("../templates/lang/es.toml")),
];

/// The language every other one falls back to, key by key.
pub const BASE_LANGUAGE: &str = "en";

/// What a notification says, as the templates see it. Remote text is already sanitised.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    pub lang: String,
    pub organisation: String,
    pub helpdesk: Option<String>,
    pub helpdesk_url: Option<String>,
    pub links: Vec<Link>,
    pub has_help: bool,
    /// The bounce's recipient: the person who sent the original message.
    pub sender: String,
    pub original: Original,
    pub reporting_mta: Option<String>,
    /// "intro_failed" or "intro_delayed".
    pub intro_key: &'static str,
    pub recipients: Vec<RecipientView>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Original {
    pub subject: Option<String>,
    pub date: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecipientView {
    pub address: String,
    /// "failed" or "delayed".
    pub action: String,
    pub failed: bool,
    pub delayed: bool,
    pub title: String,
    pub explanation: String,
    pub remedy: String,
    pub admin_note: String,
    pub reason: String,
    pub cause: String,
    pub rule: String,
    pub who: &'static str,
    /// "who_sender", "who_sender_admin", "who_recipient_side" or "who_nobody".
    pub who_key: String,
    /// "retry_no", "retry_until" or "retry_yes".
    pub retry_key: &'static str,
    pub permanent: bool,
    pub status: Option<String>,
    pub reply_code: Option<u16>,
    pub remote_mta: Option<String>,
    pub command: Option<String>,
    /// The remote server's reply, verbatim apart from control characters.
    pub diagnostic: Option<String>,
    pub last_attempt: Option<String>,
    pub will_retry_until: Option<String>,
    /// The recipient's server as named in the report, else the recipient's domain.
    pub server: String,
    /// The recipient's server answered and refused.
    pub refused: bool,
    /// The recipient's server could not be reached (DNS, network, expired).
    pub unreachable: bool,
}

/// A rendered notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    pub html: String,
}

/// Templates and strings from the built-in set and some directories, compiled.
pub struct TemplateSet {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    /// lang → key → string source (after falling back to English).
    strings: BTreeMap<String, BTreeMap<String, String>>,
    /// Template names that have both a text and an HTML layout.
    names: Vec<String>,
}

impl TemplateSet {
    /// Compile the built-in templates overlaid by `dirs` (lowest priority first).
    pub fn load(dirs: &[PathBuf]) -> Result<TemplateSet> {
        let mut layouts: BTreeMap<String, (String, String)> = BUILTIN_TEMPLATES
            .iter()
            .map(|(f, src)| (f.to_string(), (format!("built-in {f}"), src.to_string())))
            .collect();
        let mut strings: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (lang, src) in BUILTIN_STRINGS {
            merge_strings(&mut strings, lang, src, &format!("built-in lang/{lang}.toml"))?;
        }
        for dir in dirs {
            read_dir_into(dir, &mut layouts, &mut strings)?;
        }
        let base = strings.get(BASE_LANGUAGE).cloned().unwrap_or_default();
        for table in strings.values_mut() {
            for (k, v) in &base {
                table.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let mut html = registry(true);
        let mut text = registry(false);
        let mut names = Vec::new();
        for (file, (origin, src)) in &layouts {
            let (reg, name) = match (file.strip_suffix(".html.hbs"), file.strip_suffix(".txt.hbs")) {
                (Some(n), _) => (&mut html, n),
                (_, Some(n)) => (&mut text, n),
                _ => continue,
            };
            reg.register_template_string(name, src).with_context(|| format!("template {origin}"))?;
            names.push(name.to_string());
        }
        for (lang, table) in &strings {
            for (key, src) in table {
                // Compiled once for both registries: a template does not depend on the
                // escape function, which the registry applies when it renders.
                let name = string_name(lang, key);
                let template = Template::compile_with_name(src, name.clone())
                    .with_context(|| format!("string {key:?} of language {lang:?}"))?;
                html.register_template(&name, template.clone());
                text.register_template(&name, template);
            }
        }
        names.retain(|n| html.has_template(n) && text.has_template(n));
        names.sort();
        names.dedup();
        Ok(TemplateSet { html, text, strings, names })
    }

    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.strings.keys().map(String::as_str)
    }

    pub fn has_language(&self, lang: &str) -> bool {
        self.strings.contains_key(lang)
    }

    /// Does `name` have both layouts (for every language, or as `NAME.LANG` files)?
    pub fn has_template(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name || n.strip_prefix(name).is_some_and(|rest| rest.starts_with('.')))
    }

    /// A plain string (no placeholders), e.g. "someone".
    pub fn string(&self, lang: &str, key: &str) -> Option<&str> {
        self.strings.get(lang).or_else(|| self.strings.get(BASE_LANGUAGE))?.get(key).map(String::as_str)
    }

    /// Render template `name` in `view.lang` (the `NAME.LANG` layouts when present).
    pub fn render(&self, name: &str, view: &View) -> Result<Rendered> {
        // One conversion of the view, shared by both layouts and every string they call.
        let ctx = Context::wraps(view).context("converting the view")?;
        let pick = |reg: &Handlebars, kind: &str| -> Result<String> {
            let specific = format!("{name}.{}", view.lang);
            let chosen = if reg.has_template(&specific) { specific } else { name.to_string() };
            if !reg.has_template(&chosen) {
                bail!("no {kind} template {name:?}");
            }
            reg.render_with_context(&chosen, &ctx).with_context(|| format!("rendering {kind} template {chosen:?}"))
        };
        Ok(Rendered { text: pick(&self.text, "text")?, html: pick(&self.html, "HTML")? })
    }
}

fn registry(html: bool) -> Handlebars<'static> {
    let mut reg = Handlebars::new();
    reg.set_strict_mode(true);
    if !html {
        reg.register_escape_fn(handlebars::no_escape);
    }
    reg.register_helper("t", Box::new(Translate));
    reg
}

fn string_name(lang: &str, key: &str) -> String {
    format!("s/{lang}/{key}")
}

/// `{{t "key"}}` renders string `key` of the message's language with the whole message;
/// `{{t "key" this}}` with the given data. The string is rendered in place, in a block
/// of its own (rooted at the data's path, or at the message), into the same output and
/// with the registry's escape function: no render context, data copy or string per call.
struct Translate;

impl HelperDef for Translate {
    fn call<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        r: &'reg Handlebars<'reg>,
        ctx: &'rc Context,
        rc: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        let key = h.param(0).and_then(|p| p.value().as_str()).ok_or(RenderErrorReason::ParamNotFoundForIndex("t", 0))?;
        let lang = ctx.data().get("lang").and_then(|v| v.as_str()).unwrap_or(BASE_LANGUAGE);
        let Some(string) = r.get_template(&string_name(lang, key)) else {
            return Err(RenderErrorReason::Other(format!("no string {key:?} for language {lang:?}")).into());
        };
        let mut block = BlockContext::new();
        if let Some(p) = h.param(1) {
            match p.context_path() {
                Some(path) => block.base_path_mut().clone_from(path),
                None => block.set_base_value(p.value().clone()),
            }
        }
        rc.push_block(block);
        let rendered = string.render(r, ctx, rc, out);
        rc.pop_block();
        rendered
    }
}

/// Add the layouts and strings of one template directory.
fn read_dir_into(
    dir: &Path,
    layouts: &mut BTreeMap<String, (String, String)>,
    strings: &mut BTreeMap<String, BTreeMap<String, String>>,
) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("template_dir {}: cannot read", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let file = path.file_name().and_then(|f| f.to_str()).unwrap_or_default().to_string();
        if file.ends_with(".html.hbs") || file.ends_with(".txt.hbs") {
            let src = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            layouts.insert(file, (path.display().to_string(), src));
        }
    }
    let lang_dir = dir.join("lang");
    if lang_dir.is_dir() {
        for entry in std::fs::read_dir(&lang_dir).with_context(|| format!("cannot read {}", lang_dir.display()))? {
            let path = entry?.path();
            let Some(lang) = path.file_name().and_then(|f| f.to_str()).and_then(|f| f.strip_suffix(".toml")) else { continue };
            let src = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
            merge_strings(strings, &lang.to_ascii_lowercase(), &src, &path.display().to_string())?;
        }
    }
    Ok(())
}

fn merge_strings(strings: &mut BTreeMap<String, BTreeMap<String, String>>, lang: &str, src: &str, origin: &str) -> Result<()> {
    let table: BTreeMap<String, String> = toml::from_str(src).with_context(|| format!("{origin}: want key = \"string\" lines"))?;
    strings.entry(lang.to_string()).or_default().extend(table);
    Ok(())
}
