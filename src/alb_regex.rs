//! ALB's regex dialect, as conditions and transforms take it: the `regex` crate's
//! syntax less what ALB lacks. A leaf: rules and transforms both check their
//! patterns here.

/// Refuses what ALB's regex dialect lacks but the `regex` crate takes: Unicode
/// classes (`\p{L}`, `\PL`) and possessive quantifiers (`a++`, which the crate
/// reads as a nested repetition). Look-around, back-references and atomic groups the
/// crate refuses itself.
pub fn check_alb_regex(pattern: &str) -> Result<(), String> {
    let refuse = |what: &str| {
        Err(format!(
            "invalid regex \"{pattern}\": {what} are not supported, as on ALB"
        ))
    };
    let mut chars = pattern.chars().peekable();
    // Nesting of character classes (`[a[b]]`), and an open counted repetition.
    let (mut class, mut counted) = (0usize, false);
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some('p' | 'P') = chars.next() {
                    return refuse("Unicode classes (\\p{..})");
                }
            }
            '[' => class += 1,
            ']' if class > 0 => class -= 1,
            '{' if class == 0 => counted = true,
            '*' | '+' | '?' | '}' if class == 0 => {
                let quantifier = c != '}' || std::mem::take(&mut counted);
                if quantifier && chars.peek() == Some(&'+') {
                    return refuse("possessive quantifiers");
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// The `regex` crate's error in one line.
pub fn describe_regex_error(pattern: &str, e: &regex::Error) -> String {
    let why = match e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or("syntax error")
            .to_string(),
        regex::Error::CompiledTooBig(_) => "too large once compiled".to_string(),
        _ => e.to_string(),
    };
    format!("invalid regex \"{pattern}\": {why}")
}
