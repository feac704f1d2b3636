//! `fiberlbctl apply -f` and `fiberlbctl diff -f`.

use fiberlb_controlplane::api::apply;
use fiberlb_controlplane::api::client::Clients;
use fiberlb_controlplane::pb;
use serde::Serialize;

use super::*;

/// `fiberlbctl diff`: `Ok(true)` when the file differs from the running configuration.
pub(crate) async fn diff_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    file: &std::path::Path,
    prune: bool,
) -> Result<bool, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    let (desired, _) =
        apply::desired_from_yaml(&text).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
    let current = apply::current(c, &scope).await?;
    let changes = apply::plan(&desired, &current, prune).map_err(|e| Failure(e.to_string()))?;
    let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    if out == Output::Json {
        print_json(&DiffReport {
            differences: !lines.is_empty(),
            changes: lines.clone(),
        })?;
    } else {
        for l in &lines {
            out!("{l}");
        }
    }
    Ok(!lines.is_empty())
}

#[derive(Serialize)]
pub(crate) struct DiffReport {
    pub(crate) differences: bool,
    pub(crate) changes: Vec<String>,
}

/// Runs `cli`; `Ok(true)` means "differences found" (`diff`'s exit code 1).

#[derive(Serialize)]
pub(crate) struct ApplyReport {
    pub(crate) dry_run: bool,
    pub(crate) changes: Vec<String>,
}

pub(crate) async fn apply_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    file: &std::path::Path,
    dry_run: bool,
    prune: bool,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure(format!("cannot read {}: {e}", file.display())))?;
    let (desired, set) =
        apply::desired_from_yaml(&text).map_err(|e| Failure(format!("{}: {e}", file.display())))?;
    if set.tunnel != Default::default() && out == Output::Table {
        eprintln!(
            "note: the file's tunnel section is node-wide and is not applied; set [tunnel] in the \
             fiberlbd config instead"
        );
    }
    let current = apply::current(c, &scope).await?;
    let changes = apply::plan(&desired, &current, prune).map_err(|e| Failure(e.to_string()))?;
    let lines: Vec<String> = changes.iter().map(ToString::to_string).collect();
    if dry_run {
        if out == Output::Json {
            return print_json(&ApplyReport {
                dry_run,
                changes: lines,
            });
        }
        if lines.is_empty() {
            out!("no changes");
        }
        for l in &lines {
            out!("{l} (dry run)");
        }
        return Ok(());
    }
    let table_out = out == Output::Table;
    apply::execute(c, &scope, &current, &changes, |ch| {
        if table_out {
            out!("{ch}");
        }
    })
    .await
    .map_err(|e| Failure(format!("{e}; the changes listed above were made")))?;
    if out == Output::Json {
        return print_json(&ApplyReport {
            dry_run,
            changes: lines,
        });
    }
    if lines.is_empty() {
        out!("no changes");
    }
    Ok(())
}
