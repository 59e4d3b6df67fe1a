//! `tokentrail generate`: generated traffic and its scenarios' ground truth as files.

use crate::synth::{GroundTruth, Scenario};
use anyhow::{Context, Result};
use chrono::{DurationRound, TimeDelta, Utc};
use std::path::{Path, PathBuf};

pub fn parse_scenarios(names: &[String]) -> Result<Vec<Scenario>> {
    if names.iter().any(|n| n == "all") {
        return Ok(Scenario::all().to_vec());
    }
    names.iter().map(|n| Scenario::parse(n.trim()).map_err(anyhow::Error::msg)).collect()
}

/// Writes `days` of traffic ending at the start of today (UTC), so the same seed on
/// the same day gives the same files. `out` is an `.ndjson`/`.json` file, or a
/// directory filled in Azure's storage-archive layout. The scenarios' ground truth
/// goes beside it, in `<out without extension>.truth.json`, and the tenant's inventory (what
/// `tokentrail inventory --from-file <DIR>/*.json` reads) in `<out without extension>.inventory/`.
pub fn generate_files(
    out: &Path,
    days: u32,
    seed: u64,
    scenarios: &[Scenario],
    scale: f64,
    profile: crate::synth::Profile,
) -> Result<String> {
    let to = Utc::now().duration_trunc(TimeDelta::days(1))?;
    let from = to - TimeDelta::days(days as i64);
    let generator =
        crate::synth::Generator::new(crate::synth::Tenant::new(seed), seed).with_scale(scale).with_profile(profile);
    let (events, truths) = generator.history(from, to, scenarios);
    let name = out.to_string_lossy().to_ascii_lowercase();
    let single_file = [".ndjson", ".json", ".jsonl"].iter().any(|ext| name.ends_with(ext));
    let truth_path = if single_file {
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
        crate::synth::write_ndjson(file, &events).with_context(|| format!("writing {}", out.display()))?;
        out.with_extension("truth.json")
    } else {
        write_archive(out, &events)?;
        // Beside the directory, not in it: ingesting the directory must not read it.
        out.with_extension("truth.json")
    };
    write_truth(&truth_path, &truths)?;
    let inventory_dir = out.with_extension("inventory");
    write_inventory(&generator, &inventory_dir)?;
    Ok(format!(
        "wrote {} records ({} to {}) to {}, ground truth of {} scenarios to {}, the inventory to {}",
        events.len(),
        from.format("%Y-%m-%d"),
        to.format("%Y-%m-%d"),
        out.display(),
        truths.len(),
        truth_path.display(),
        inventory_dir.display()
    ))
}

/// Writes the generated tenant's inventory (`az cosmosdb list`, `az cosmosdb sql role
/// definition list`, `az cosmosdb sql role assignment list`, `az role assignment list`) as four
/// JSON files into `dir`; returns their paths.
pub fn write_inventory(generator: &crate::synth::Generator, dir: &Path) -> Result<Vec<PathBuf>> {
    generator.inventory().write(dir).with_context(|| format!("writing the inventory to {}", dir.display()))
}

fn write_truth(path: &Path, truths: &[GroundTruth]) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    serde_json::to_writer_pretty(file, truths)?;
    Ok(())
}

/// `insights-logs-<category>/resourceId=<id>/y=YYYY/m=MM/d=DD/h=HH/m=00/PT1H.json`,
/// one record per line, as Azure Monitor archives to a storage account.
fn write_archive(dir: &Path, events: &[crate::synth::Event]) -> Result<()> {
    let mut files: std::collections::BTreeMap<PathBuf, Vec<u8>> = Default::default();
    for event in events {
        let resource = event.record.get("resourceId").and_then(|v| v.as_str()).unwrap_or("/unknown");
        let path = dir
            .join(format!("insights-logs-{}", event.category.to_ascii_lowercase()))
            .join(format!("resourceId={}", resource.trim_start_matches('/')))
            .join(event.time.format("y=%Y/m=%m/d=%d/h=%H/m=00").to_string())
            .join("PT1H.json");
        let buf = files.entry(path).or_default();
        serde_json::to_writer(&mut *buf, &event.record)?;
        buf.push(b'\n');
    }
    for (path, content) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
