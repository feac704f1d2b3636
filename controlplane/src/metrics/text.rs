//! Prometheus text exposition format 0.0.4: `# HELP`, `# TYPE`, then samples.

use std::fmt::Write as _;

/// Builds one exposition; each family is written once, with all its samples together.
#[derive(Debug, Default)]
pub struct Encoder {
    out: String,
}

/// Kind of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Encoder {
    pub fn new() -> Self {
        Encoder::default()
    }

    /// Starts family `name`.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the current family.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
            }
            self.out.push('}');
        }
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 9.0e15 {
            let _ = writeln!(self.out, " {}", value as i64);
        } else if value.is_nan() {
            self.out.push_str(" NaN\n");
        } else {
            let _ = writeln!(self.out, " {value}");
        }
    }

    /// A family with a single unlabelled sample.
    pub fn single(&mut self, name: &str, kind: Kind, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

fn escape_label(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_escaping() {
        let mut e = Encoder::new();
        e.family("x_total", Kind::Counter, "a\nb");
        e.sample("x_total", &[("name", "a\"b\\c\nd"), ("k", "v")], 3.0);
        e.sample("x_total", &[], 0.25);
        let s = e.finish();
        assert_eq!(
            s,
            "# HELP x_total a\\nb\n# TYPE x_total counter\nx_total{name=\"a\\\"b\\\\c\\nd\",k=\"v\"} 3\nx_total 0.25\n"
        );
    }
}
