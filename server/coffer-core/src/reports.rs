//! The health reports (seed 001's Device status, Organizations and Users
//! reports): rows built from the stored facts and the health rules,
//! filtered by org subtree, state and reason, sorted by any column either
//! way, paged with a cursor, as JSON or CSV. Scoped like every inventory
//! read; a one-org report reads that subtree's devices through the
//! devices-by-org index, never every device.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use coffer_types::wire::{DeviceStatusRow, OrgReportRow, ReportPage, ReportQuery, UserReportRow};
use coffer_types::Name;
use serde_json::Value;

use crate::access::{Permission, Principal};
use crate::admin::device_info;
use crate::health::{Reason, State};
use crate::{Coffer, CoreError, Result};

/// Most rows a JSON page holds.
pub const REPORT_PAGE_MAX: usize = 10_000;

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    DeviceStatus,
    Orgs,
    Users,
}

impl ReportKind {
    pub fn parse(t: &str) -> Result<Self> {
        match t {
            "device-status" => Ok(Self::DeviceStatus),
            "orgs" => Ok(Self::Orgs),
            "users" => Ok(Self::Users),
            _ => Err(CoreError::NotFound(format!(
                "there is no report {t:?}; the reports are device-status, orgs and users"
            ))),
        }
    }

    /// The columns, in order (the CSV header and the sort keys).
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            Self::DeviceStatus => &[
                "device",
                "name",
                "user",
                "org",
                "state",
                "reason",
                "percent_complete",
                "last_activity",
                "last_completed",
                "last_connection",
                "agent_version",
                "os",
                "bytes_stored",
                "backups",
            ],
            Self::Orgs => &[
                "org",
                "parent",
                "devices",
                "ok",
                "warning",
                "critical",
                "parked",
                "users",
                "bytes_stored",
            ],
            Self::Users => &["user", "org", "devices", "worst_state", "bytes_stored"],
        }
    }

    fn default_sort(self) -> &'static str {
        match self {
            Self::DeviceStatus => "state",
            Self::Orgs => "org",
            Self::Users => "worst_state",
        }
    }

    /// State columns sort by severity, worst last (first with `desc`).
    fn default_desc(self) -> bool {
        matches!(self, Self::DeviceStatus | Self::Users)
    }
}

/// How bad a state is, for sorting and for a user's worst state.
fn severity(state: &str) -> u8 {
    match state {
        "parked" => 0,
        "ok" => 1,
        "warning" => 2,
        "critical" => 3,
        _ => 0,
    }
}

/// A sorted, filtered report, before paging.
struct Table {
    columns: &'static [&'static str],
    /// Each row: its values by column, and its unique key (the cursor).
    rows: Vec<(Vec<Value>, String)>,
}

/// A filter's parts, checked.
struct Filter {
    orgs: Option<BTreeSet<Name>>,
    states: Option<BTreeSet<String>>,
    reasons: Option<BTreeSet<String>>,
}

fn list(t: &Option<String>) -> Option<Vec<String>> {
    t.as_ref().map(|s| {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    })
}

/// Compare two cells: absent first, then numbers, then text.
fn cell_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::Number(_), _) => Ordering::Less,
        (_, Value::Number(_)) => Ordering::Greater,
        (x, y) => x.as_str().unwrap_or("").cmp(y.as_str().unwrap_or("")),
    }
}

impl Coffer {
    /// One page of report `kind` for `p`.
    pub async fn report(
        &self,
        p: &Principal,
        kind: ReportKind,
        q: &ReportQuery,
    ) -> Result<ReportPage> {
        let t = self.report_table(p, kind, q).await?;
        let limit = q.limit.unwrap_or(1000).clamp(1, REPORT_PAGE_MAX);
        let total = t.rows.len();
        let start = match &q.after {
            None => 0,
            Some(c) => {
                let key = decode_cursor(c)?;
                t.rows
                    .iter()
                    .position(|(_, k)| *k == key)
                    .map(|i| i + 1)
                    .ok_or_else(|| {
                        CoreError::InvalidRequest(
                            "the cursor's row is no longer in this report (its filter or sort changed); start again without `after`".into(),
                        )
                    })?
            }
        };
        let page: Vec<_> = t.rows.into_iter().skip(start).take(limit).collect();
        let next_after = (start + page.len() < total)
            .then(|| page.last().map(|(_, k)| encode_cursor(k)))
            .flatten();
        Ok(ReportPage {
            report: kind_name(kind).into(),
            columns: t.columns.iter().map(|c| c.to_string()).collect(),
            total,
            rows: page
                .into_iter()
                .map(|(cells, _)| {
                    Value::Object(t.columns.iter().map(|c| c.to_string()).zip(cells).collect())
                })
                .collect(),
            next_after,
        })
    }

    /// The whole report as CSV (RFC 4180), header first.
    pub async fn report_csv(
        &self,
        p: &Principal,
        kind: ReportKind,
        q: &ReportQuery,
    ) -> Result<String> {
        let t = self.report_table(p, kind, q).await?;
        let mut out = String::with_capacity(64 + t.rows.len() * 160);
        push_csv_row(&mut out, t.columns.iter().map(|c| Value::from(*c)));
        for (r, _) in t.rows {
            push_csv_row(&mut out, r.into_iter());
        }
        Ok(out)
    }

    async fn report_table(
        &self,
        p: &Principal,
        kind: ReportKind,
        q: &ReportQuery,
    ) -> Result<Table> {
        self.require(p, Permission::ReadInventory, "reading reports")
            .await?;
        let core = self.clone();
        let p = p.clone();
        let q = q.clone();
        tokio::task::spawn_blocking(move || core.report_table_now(&p, kind, &q))
            .await
            .map_err(|e| CoreError::Internal(format!("report: {e}")))?
    }

    fn report_table_now(&self, p: &Principal, kind: ReportKind, q: &ReportQuery) -> Result<Table> {
        let columns = kind.columns();
        let sort = q.sort.as_deref().unwrap_or(kind.default_sort());
        let col = columns.iter().position(|c| *c == sort).ok_or_else(|| {
            CoreError::InvalidRequest(format!(
                "{sort:?} is not a column of the {} report; sort by one of {}",
                kind_name(kind),
                columns.join(", ")
            ))
        })?;
        let desc = q
            .desc
            .unwrap_or(sort == kind.default_sort() && kind.default_desc());
        let filter = self.report_filter(p, q)?;
        let mut rows = match kind {
            ReportKind::DeviceStatus => self
                .device_rows(p, &filter)?
                .into_iter()
                .map(|r| {
                    let k = r.device.to_string();
                    (to_cells(&r, columns), k)
                })
                .collect::<Vec<_>>(),
            ReportKind::Orgs => self
                .org_rows(p, &filter)?
                .into_iter()
                .map(|r| {
                    let k = r.org.to_string();
                    (to_cells(&r, columns), k)
                })
                .collect(),
            ReportKind::Users => self
                .user_rows(p, &filter)?
                .into_iter()
                .map(|r| {
                    let k = format!("{}/{}", r.org, r.user);
                    (to_cells(&r, columns), k)
                })
                .collect(),
        };
        let state_col = matches!(sort, "state" | "worst_state");
        rows.sort_by(|(a, ka), (b, kb)| {
            let o = if state_col {
                severity(a[col].as_str().unwrap_or(""))
                    .cmp(&severity(b[col].as_str().unwrap_or("")))
            } else {
                cell_cmp(&a[col], &b[col])
            };
            let o = if desc { o.reverse() } else { o };
            o.then_with(|| ka.cmp(kb))
        });
        Ok(Table { columns, rows })
    }

    fn report_filter(&self, p: &Principal, q: &ReportQuery) -> Result<Filter> {
        let tree = self.org_tree();
        let orgs = match &q.org {
            None => None,
            Some(o) => {
                let o = Name::new(o).map_err(|e| CoreError::InvalidId(e.to_string()))?;
                if !tree.contains(&o) || !p.sees(&tree, &o) {
                    return Err(CoreError::NotFound(format!("no org {o:?}")));
                }
                Some(tree.subtree(&o).into_iter().cloned().collect())
            }
        };
        let states = list(&q.state)
            .map(|v| {
                v.into_iter()
                    .map(|s| State::parse(&s).map(|s| s.as_str().to_string()))
                    .collect::<std::result::Result<BTreeSet<_>, _>>()
            })
            .transpose()
            .map_err(CoreError::InvalidRequest)?;
        let reasons = list(&q.reason)
            .map(|v| {
                v.into_iter()
                    .map(|s| Reason::parse(&s).map(|r| r.as_str().to_string()))
                    .collect::<std::result::Result<BTreeSet<_>, _>>()
            })
            .transpose()
            .map_err(CoreError::InvalidRequest)?;
        Ok(Filter {
            orgs,
            states,
            reasons,
        })
    }

    /// The orgs a report reads: the filter's subtree, within `p`'s scope.
    fn report_orgs(&self, p: &Principal, f: &Filter) -> Option<Vec<Name>> {
        match (&f.orgs, p.org()) {
            (Some(o), _) => Some(o.iter().cloned().collect()),
            (None, Some(_)) => Some(self.orgs_in_scope(p)),
            (None, None) => None,
        }
    }

    /// The device-status rows of `org`'s own devices.
    pub(crate) fn status_rows_of(&self, org: &Name) -> Result<Vec<DeviceStatusRow>> {
        let f = Filter {
            orgs: None,
            states: None,
            reasons: None,
        };
        self.rows_in(Some(vec![org.clone()]), &f)
    }

    fn device_rows(&self, p: &Principal, f: &Filter) -> Result<Vec<DeviceStatusRow>> {
        self.rows_in(self.report_orgs(p, f), f)
    }

    /// Rows of the devices of `orgs` (every org: `None`) that pass `f`'s
    /// state and reason filters.
    fn rows_in(&self, orgs: Option<Vec<Name>>, f: &Filter) -> Result<Vec<DeviceStatusRow>> {
        let records = match orgs {
            None => self.meta.devices()?,
            Some(orgs) => {
                let mut v = Vec::new();
                for o in orgs {
                    v.extend(self.meta.devices_in_org(&o)?);
                }
                v
            }
        };
        let now = self.now();
        let mut out = Vec::with_capacity(records.len());
        for d in records {
            if d.revoked {
                continue;
            }
            let a = self.meta.archive(&d.archive)?;
            let info = device_info(d, a);
            let h = self.health_at(&info, now)?;
            let (state, reason) = (h.state.as_str(), h.reason.as_str());
            if f.states.as_ref().is_some_and(|s| !s.contains(state))
                || f.reasons.as_ref().is_some_and(|r| !r.contains(reason))
            {
                continue;
            }
            out.push(DeviceStatusRow {
                device: info.device,
                name: info.name,
                user: info.user,
                org: info.org,
                state: state.into(),
                reason: reason.into(),
                percent_complete: info.percent_complete,
                last_activity: info.last_activity,
                last_completed: info.last_completed,
                last_connection: info.last_connection,
                agent_version: info.agent_version,
                os: info.os,
                bytes_stored: info.bytes_stored,
                backups: info.backup_count,
            });
        }
        Ok(out)
    }

    fn org_rows(&self, p: &Principal, f: &Filter) -> Result<Vec<OrgReportRow>> {
        let tree = self.org_tree();
        let orgs: Vec<Name> = match self.report_orgs(p, f) {
            Some(o) => o,
            None => tree.orgs().cloned().collect(),
        };
        let mut by: BTreeMap<Name, OrgReportRow> = orgs
            .iter()
            .map(|o| {
                (
                    o.clone(),
                    OrgReportRow {
                        org: o.clone(),
                        parent: tree.parent(o).cloned(),
                        devices: 0,
                        ok: 0,
                        warning: 0,
                        critical: 0,
                        parked: 0,
                        users: 0,
                        bytes_stored: 0,
                    },
                )
            })
            .collect();
        let sub = Filter {
            orgs: Some(orgs.iter().cloned().collect()),
            states: f.states.clone(),
            reasons: f.reasons.clone(),
        };
        for d in self.device_rows(p, &sub)? {
            let Some(r) = by.get_mut(&d.org) else {
                continue;
            };
            r.devices += 1;
            match d.state.as_str() {
                "ok" => r.ok += 1,
                "warning" => r.warning += 1,
                "critical" => r.critical += 1,
                _ => r.parked += 1,
            }
            r.bytes_stored += d.bytes_stored;
        }
        for o in &orgs {
            if let Some(r) = by.get_mut(o) {
                r.users = self.meta.users_of(o)?.len() as u64;
            }
        }
        Ok(by.into_values().collect())
    }

    fn user_rows(&self, p: &Principal, f: &Filter) -> Result<Vec<UserReportRow>> {
        let users = match self.report_orgs(p, f) {
            None => self.meta.users()?,
            Some(orgs) => {
                let mut v = Vec::new();
                for o in orgs {
                    v.extend(self.meta.users_of(&o)?);
                }
                v
            }
        };
        let mut by: BTreeMap<(Name, Name), UserReportRow> = BTreeMap::new();
        let filtered = f.states.is_some() || f.reasons.is_some();
        if !filtered {
            for u in users {
                by.insert(
                    (u.org.clone(), u.name.clone()),
                    UserReportRow {
                        user: u.name,
                        org: u.org,
                        devices: 0,
                        worst_state: None,
                        bytes_stored: 0,
                    },
                );
            }
        }
        for d in self.device_rows(p, f)? {
            let r = by
                .entry((d.org.clone(), d.user.clone()))
                .or_insert_with(|| UserReportRow {
                    user: d.user.clone(),
                    org: d.org.clone(),
                    devices: 0,
                    worst_state: None,
                    bytes_stored: 0,
                });
            r.devices += 1;
            r.bytes_stored += d.bytes_stored;
            if r.worst_state
                .as_deref()
                .is_none_or(|w| severity(&d.state) > severity(w))
            {
                r.worst_state = Some(d.state.clone());
            }
        }
        Ok(by.into_values().collect())
    }
}

fn kind_name(k: ReportKind) -> &'static str {
    match k {
        ReportKind::DeviceStatus => "device-status",
        ReportKind::Orgs => "orgs",
        ReportKind::Users => "users",
    }
}

/// A row's cells in column order (its JSON fields by name).
fn to_cells<T: serde::Serialize>(row: &T, columns: &[&str]) -> Vec<Value> {
    let v = serde_json::to_value(row).unwrap_or(Value::Null);
    columns
        .iter()
        .map(|c| v.get(*c).cloned().unwrap_or(Value::Null))
        .collect()
}

fn encode_cursor(key: &str) -> String {
    hex::encode(key.as_bytes())
}

fn decode_cursor(c: &str) -> Result<String> {
    hex::decode(c)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            CoreError::InvalidRequest(format!(
                "{c:?} is not a report cursor; pass the previous page's next_after"
            ))
        })
}

/// One CSV line (RFC 4180): fields with a comma, a quote or a line break
/// are quoted, quotes doubled. A text cell that a spreadsheet would read
/// as a formula (`=`, `+`, `-`, `@` first) is led by a `'`.
pub fn push_csv_row(out: &mut String, cells: impl Iterator<Item = Value>) {
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let text = match c {
            Value::Null => String::new(),
            Value::String(s) => {
                if s.starts_with(['=', '+', '-', '@']) {
                    format!("'{s}")
                } else {
                    s
                }
            }
            Value::Number(n) => n.to_string(),
            other => other.to_string(),
        };
        if text.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&text.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(&text);
        }
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting_and_defuses_formulas() {
        let mut s = String::new();
        push_csv_row(
            &mut s,
            [
                Value::from("plain"),
                Value::from("a,b"),
                Value::from("say \"hi\""),
                Value::from("two\nlines"),
                Value::from("=HYPERLINK(\"x\")"),
                Value::Null,
                Value::from(42),
            ]
            .into_iter(),
        );
        assert_eq!(
            s,
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\"'=HYPERLINK(\"\"x\"\")\",,42\r\n"
        );
    }

    #[test]
    fn cells_sort_absent_first_then_numbers_then_text() {
        let mut v = vec![
            Value::from("b"),
            Value::from(10),
            Value::Null,
            Value::from(9.5),
            Value::from("a"),
        ];
        v.sort_by(cell_cmp);
        assert_eq!(
            v,
            [
                Value::Null,
                Value::from(9.5),
                Value::from(10),
                Value::from("a"),
                Value::from("b")
            ]
        );
    }
}
