//! PromQL over the raw samples held in memory: the supported subset of the
//! language is planned from `promql-parser`'s syntax tree, then evaluated at
//! every step of a range (or at one instant) with Prometheus 3's semantics.
//! Pure: no I/O, no HTTP.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use promql_parser::label::{METRIC_NAME, Matcher, Matchers};
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};

use crate::store::{RawSample, ServerSamples};

/// The two metrics every server has.
pub const CPU_METRIC: &str = "sperform_cpu_percent";
pub const RAM_METRIC: &str = "sperform_ram_percent";
/// The one label besides the metric name.
pub const SERVER_LABEL: &str = "server";
/// How far back an instant selector looks for a sample (Prometheus's
/// `--query.lookback-delta` default).
pub const LOOKBACK_MS: i64 = 5 * 60 * 1000;
/// Most points per series a range query may ask for, as in Prometheus.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;
/// Most series an answer may hold.
pub const MAX_SERIES: usize = 10_000;
/// Most points (series times steps) an intermediate result may hold.
pub const MAX_POINTS_IN_MEMORY: usize = 10_000_000;
/// Most samples the `_over_time` windows of a query may read in total.
pub const MAX_SAMPLES_SCANNED: u64 = 200_000_000;

/// A series' labels, sorted by name (`__name__` first).
pub type Labels = BTreeMap<String, String>;

const SUPPORTED: &str = "supported: instant selectors of sperform_cpu_percent and \
    sperform_ram_percent (matchers =, !=, =~, !~), avg_over_time, min_over_time, \
    max_over_time and count_over_time of a range selector, the aggregations avg, min, max, \
    count and topk (with by or without), and arithmetic between number literals";

/// Why a query was refused, in Prometheus's terms.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryError {
    /// The request is wrong: `bad_data`, answered `400`.
    BadData(String),
    /// The query is valid but cannot be answered: `execution`, answered `422`.
    Execution(String),
}

impl QueryError {
    pub fn message(&self) -> &str {
        match self {
            QueryError::BadData(message) | QueryError::Execution(message) => message,
        }
    }
}

/// The times a query is evaluated at: `start`, `start + step`, ... up to
/// and including the last one not after the range's end (all Unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    pub start: i64,
    pub step: i64,
    pub count: usize,
}

impl Steps {
    /// One evaluation at `time`.
    pub fn instant(time: i64) -> Steps {
        Steps {
            start: time,
            step: 1,
            count: 1,
        }
    }

    /// The steps of a range query, checked as Prometheus checks them.
    pub fn range(start: i64, end: i64, step: i64) -> Result<Steps, QueryError> {
        if end < start {
            return Err(QueryError::BadData(
                "end timestamp must not be before start time".to_owned(),
            ));
        }
        if step <= 0 {
            return Err(QueryError::BadData(
                "zero or negative query resolution step widths are not accepted. \
                 Try a positive integer"
                    .to_owned(),
            ));
        }
        let intervals = (end - start) / step;
        if intervals > MAX_POINTS_PER_SERIES {
            return Err(QueryError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. \
                 Try decreasing the query resolution (?step=XX)"
                    .to_owned(),
            ));
        }
        let count = usize::try_from(intervals + 1)
            .map_err(|_| QueryError::BadData("the range holds too many steps".to_owned()))?;
        Ok(Steps { start, step, count })
    }

    pub fn time(&self, index: usize) -> i64 {
        // At most 11,001 steps: the index always fits.
        self.start + self.step * index as i64
    }

    /// The last evaluation time.
    pub fn end(&self) -> i64 {
        self.time(self.count.saturating_sub(1))
    }
}

/// A series selector: a metric name and label matchers.
#[derive(Debug, Clone)]
pub struct Selector {
    name: Option<String>,
    matchers: Matchers,
}

impl Selector {
    /// Parses a `match[]` parameter: a vector selector on its own.
    pub fn parse(text: &str) -> Result<Selector, QueryError> {
        let expr = parser::parse(text).map_err(QueryError::BadData)?;
        match expr {
            Expr::VectorSelector(selector) => Selector::from_ast(&selector),
            other => Err(QueryError::BadData(format!(
                "{other} is not a series selector such as sperform_cpu_percent{{server=\"web-1\"}}"
            ))),
        }
    }

    fn from_ast(selector: &VectorSelector) -> Result<Selector, QueryError> {
        if selector.offset.is_some() {
            return Err(unsupported("the offset modifier"));
        }
        if selector.at.is_some() {
            return Err(unsupported("the @ modifier"));
        }
        Ok(Selector {
            name: selector.name.clone(),
            matchers: selector.matchers.clone(),
        })
    }

    /// Whether a series with these labels is selected. A label the series
    /// lacks has the empty value, as in Prometheus.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value_of = |name: &str| labels.get(name).map_or("", String::as_str);
        if let Some(name) = &self.name
            && value_of(METRIC_NAME) != name
        {
            return false;
        }
        let all = |matchers: &[Matcher]| matchers.iter().all(|m| m.is_match(value_of(&m.name)));
        all(&self.matchers.matchers)
            && (self.matchers.or_matchers.is_empty()
                || self.matchers.or_matchers.iter().any(|group| all(group)))
    }
}

/// The labels of one stored series.
pub fn series_labels(metric: &str, server: &str) -> Labels {
    Labels::from([
        (METRIC_NAME.to_owned(), metric.to_owned()),
        (SERVER_LABEL.to_owned(), server.to_owned()),
    ])
}

/// Every stored series (both metrics of each server) that one of
/// `selectors` selects, sorted by labels.
pub fn matching_series(selectors: &[Selector], servers: &[String]) -> Vec<Labels> {
    let mut found = BTreeSet::new();
    for server in servers {
        for metric in [CPU_METRIC, RAM_METRIC] {
            let labels = series_labels(metric, server);
            if selectors.iter().any(|selector| selector.matches(&labels)) {
                found.insert(labels);
            }
        }
    }
    found.into_iter().collect()
}

/// A parsed query, checked to use only what sperform supports.
#[derive(Debug, Clone)]
pub struct Query {
    root: Node,
}

#[derive(Debug, Clone)]
enum Node {
    Scalar(f64),
    Selector(Selector),
    OverTime {
        function: OverTime,
        selector: Selector,
        range_ms: i64,
    },
    Aggregate {
        op: Aggregation,
        grouping: Grouping,
        inner: Box<Node>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum OverTime {
    Avg,
    Min,
    Max,
    Count,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Aggregation {
    Avg,
    Min,
    Max,
    Count,
    TopK(f64),
}

#[derive(Debug, Clone)]
enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

/// What a query evaluated to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A scalar: its value at every step.
    Scalar(Vec<f64>),
    /// Series with their points `(Unix ms, value)`; in label order, except
    /// after a top-level `topk`, whose single-step result is by value,
    /// highest first.
    Series(Vec<Series>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<(i64, f64)>,
}

impl Query {
    pub fn parse(text: &str) -> Result<Query, QueryError> {
        let expr = parser::parse(text).map_err(QueryError::BadData)?;
        Ok(Query { root: plan(&expr)? })
    }

    /// The servers whose samples the query reads, of `servers`.
    pub fn servers_read(&self, servers: &[String]) -> Vec<String> {
        let mut selectors = Vec::new();
        self.root.selectors(&mut selectors);
        servers
            .iter()
            .filter(|server| {
                [CPU_METRIC, RAM_METRIC].iter().any(|metric| {
                    let labels = series_labels(metric, server);
                    selectors.iter().any(|selector| selector.matches(&labels))
                })
            })
            .cloned()
            .collect()
    }

    /// How far before the first step the query reads samples.
    pub fn lookback_ms(&self) -> i64 {
        self.root.lookback_ms()
    }

    /// Evaluates the query at every step over `data`, which must hold the
    /// samples of `servers_read` in `(steps.start - lookback_ms, steps.end()]`.
    pub fn evaluate(&self, data: &[ServerSamples], steps: &Steps) -> Result<Outcome, QueryError> {
        let mut scanned = 0;
        let topk_at_top = matches!(
            self.root,
            Node::Aggregate {
                op: Aggregation::TopK(_),
                ..
            }
        );
        let columns = match self.root.evaluate(data, steps, &mut scanned)? {
            Value::Scalar(value) => return Ok(Outcome::Scalar(vec![value; steps.count])),
            Value::Columns(columns) => columns,
        };
        let mut series: Vec<Series> = columns
            .labels
            .into_iter()
            .zip(columns.values)
            .filter_map(|(labels, values)| {
                let points: Vec<(i64, f64)> = values
                    .iter()
                    .enumerate()
                    .filter_map(|(index, value)| value.map(|v| (steps.time(index), v)))
                    .collect();
                (!points.is_empty()).then_some(Series { labels, points })
            })
            .collect();
        if series.len() > MAX_SERIES {
            return Err(QueryError::Execution(format!(
                "the result would hold {} series, more than the {MAX_SERIES} allowed; \
                 narrow the selector or aggregate",
                series.len()
            )));
        }
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        if topk_at_top && steps.count == 1 {
            series.sort_by(|a, b| b.points[0].1.total_cmp(&a.points[0].1));
        }
        Ok(Outcome::Series(series))
    }
}

fn unsupported(what: &str) -> QueryError {
    QueryError::BadData(format!("sperform does not support {what}; {SUPPORTED}"))
}

fn plan(expr: &Expr) -> Result<Node, QueryError> {
    match expr {
        Expr::Paren(paren) => plan(&paren.expr),
        Expr::NumberLiteral(number) => Ok(Node::Scalar(number.val)),
        Expr::Unary(unary) => match plan(&unary.expr)? {
            Node::Scalar(value) => Ok(Node::Scalar(-value)),
            _ => Err(unsupported("unary minus on a vector")),
        },
        Expr::Binary(binary) => {
            let op = binary.op.to_string();
            let (Node::Scalar(left), Node::Scalar(right)) =
                (plan(&binary.lhs)?, plan(&binary.rhs)?)
            else {
                return Err(unsupported(&format!(
                    "the binary operator {op} between vectors"
                )));
            };
            let value = match op.as_str() {
                "+" => left + right,
                "-" => left - right,
                "*" => left * right,
                "/" => left / right,
                "%" => left % right,
                "^" => left.powf(right),
                _ => return Err(unsupported(&format!("the binary operator {op}"))),
            };
            Ok(Node::Scalar(value))
        }
        Expr::VectorSelector(selector) => Ok(Node::Selector(Selector::from_ast(selector)?)),
        Expr::MatrixSelector(_) => Err(unsupported(
            "a range selector outside avg_over_time, min_over_time, max_over_time or count_over_time",
        )),
        Expr::Call(call) => {
            let function = match call.func.name {
                "avg_over_time" => OverTime::Avg,
                "min_over_time" => OverTime::Min,
                "max_over_time" => OverTime::Max,
                "count_over_time" => OverTime::Count,
                name => return Err(unsupported(&format!("the function {name}"))),
            };
            let [argument] = call.args.args.as_slice() else {
                return Err(QueryError::BadData(format!(
                    "{} takes one range selector",
                    call.func.name
                )));
            };
            match argument.as_ref() {
                Expr::MatrixSelector(matrix) => {
                    let range_ms = i64::try_from(matrix.range.as_millis()).unwrap_or(i64::MAX);
                    if range_ms <= 0 {
                        return Err(QueryError::BadData(
                            "a range selector's range must be at least 1ms".to_owned(),
                        ));
                    }
                    Ok(Node::OverTime {
                        function,
                        selector: Selector::from_ast(&matrix.vs)?,
                        range_ms,
                    })
                }
                Expr::Subquery(_) => Err(unsupported("subqueries")),
                _ => Err(unsupported(&format!(
                    "{} of anything but a range selector",
                    call.func.name
                ))),
            }
        }
        Expr::Aggregate(aggregate) => {
            let name = aggregate.op.to_string();
            let op = match name.as_str() {
                "avg" => Aggregation::Avg,
                "min" => Aggregation::Min,
                "max" => Aggregation::Max,
                "count" => Aggregation::Count,
                "topk" => {
                    let parameter = aggregate.param.as_deref().map(plan).transpose()?;
                    let Some(Node::Scalar(k)) = parameter else {
                        return Err(unsupported("a topk parameter that is not a number"));
                    };
                    if !k.is_finite() || k.abs() >= 9.2e18 {
                        return Err(QueryError::BadData(format!(
                            "Scalar value {k} overflows int64"
                        )));
                    }
                    Aggregation::TopK(k)
                }
                _ => return Err(unsupported(&format!("the aggregation {name}"))),
            };
            let grouping = match &aggregate.modifier {
                None => Grouping::By(Vec::new()),
                Some(LabelModifier::Include(labels)) => Grouping::By(labels.labels.clone()),
                Some(LabelModifier::Exclude(labels)) => Grouping::Without(labels.labels.clone()),
            };
            let inner = plan(&aggregate.expr)?;
            if matches!(inner, Node::Scalar(_)) {
                return Err(QueryError::BadData(format!(
                    "{name} aggregates an instant vector, not a number"
                )));
            }
            Ok(Node::Aggregate {
                op,
                grouping,
                inner: Box::new(inner),
            })
        }
        Expr::Subquery(_) => Err(unsupported("subqueries")),
        Expr::StringLiteral(_) => Err(unsupported("string literals")),
        Expr::Extension(_) => Err(unsupported("extension expressions")),
    }
}

/// An intermediate result: fixed series, each with a value or none at
/// every step (`values[series][step]`).
struct Columns {
    labels: Vec<Labels>,
    values: Vec<Vec<Option<f64>>>,
}

enum Value {
    Scalar(f64),
    Columns(Columns),
}

impl Node {
    fn selectors<'a>(&'a self, found: &mut Vec<&'a Selector>) {
        match self {
            Node::Scalar(_) => {}
            Node::Selector(selector) | Node::OverTime { selector, .. } => found.push(selector),
            Node::Aggregate { inner, .. } => inner.selectors(found),
        }
    }

    fn lookback_ms(&self) -> i64 {
        match self {
            Node::Scalar(_) => 0,
            Node::Selector(_) => LOOKBACK_MS,
            Node::OverTime { range_ms, .. } => *range_ms,
            Node::Aggregate { inner, .. } => inner.lookback_ms(),
        }
    }

    fn evaluate(
        &self,
        data: &[ServerSamples],
        steps: &Steps,
        scanned: &mut u64,
    ) -> Result<Value, QueryError> {
        match self {
            Node::Scalar(value) => Ok(Value::Scalar(*value)),
            Node::Selector(selector) => {
                let inputs = selected(selector, data, steps)?;
                let mut columns = Columns {
                    labels: Vec::with_capacity(inputs.len()),
                    values: Vec::with_capacity(inputs.len()),
                };
                for (labels, samples, metric) in inputs {
                    let values = (0..steps.count)
                        .map(|index| latest(samples, steps.time(index)).map(|s| metric.of(s)))
                        .collect();
                    columns.labels.push(labels);
                    columns.values.push(values);
                }
                Ok(Value::Columns(columns))
            }
            Node::OverTime {
                function,
                selector,
                range_ms,
            } => {
                let inputs = selected(selector, data, steps)?;
                let mut columns = Columns {
                    labels: Vec::with_capacity(inputs.len()),
                    values: Vec::with_capacity(inputs.len()),
                };
                for (mut labels, samples, metric) in inputs {
                    labels.remove(METRIC_NAME);
                    let mut values = Vec::with_capacity(steps.count);
                    for index in 0..steps.count {
                        let window = window(samples, steps.time(index), *range_ms);
                        *scanned += window.len() as u64;
                        if *scanned > MAX_SAMPLES_SCANNED {
                            return Err(too_many_samples());
                        }
                        values.push(over_time(*function, window, metric));
                    }
                    columns.labels.push(labels);
                    columns.values.push(values);
                }
                check_unique(&columns.labels)?;
                Ok(Value::Columns(columns))
            }
            Node::Aggregate {
                op,
                grouping,
                inner,
            } => {
                let Value::Columns(input) = inner.evaluate(data, steps, scanned)? else {
                    return Err(QueryError::BadData(
                        "an aggregation needs an instant vector".to_owned(),
                    ));
                };
                Ok(Value::Columns(aggregate(*op, grouping, input, steps)))
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Metric {
    Cpu,
    Ram,
}

impl Metric {
    fn of(self, sample: &RawSample) -> f64 {
        match self {
            Metric::Cpu => sample.cpu,
            Metric::Ram => sample.ram,
        }
    }
}

/// A stored series as an input: its labels, its samples, and which of
/// their values it is.
type Input<'a> = (Labels, &'a [RawSample], Metric);

/// The stored series `selector` selects, in label order.
fn selected<'a>(
    selector: &Selector,
    data: &'a [ServerSamples],
    steps: &Steps,
) -> Result<Vec<Input<'a>>, QueryError> {
    let mut found = Vec::new();
    for (metric_name, metric) in [(CPU_METRIC, Metric::Cpu), (RAM_METRIC, Metric::Ram)] {
        for server in data {
            let labels = series_labels(metric_name, &server.name);
            if selector.matches(&labels) {
                found.push((labels, server.samples.as_slice(), metric));
            }
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    if found.len().saturating_mul(steps.count) > MAX_POINTS_IN_MEMORY {
        return Err(too_many_samples());
    }
    Ok(found)
}

fn too_many_samples() -> QueryError {
    QueryError::Execution(
        "query processing would load too many samples into memory in query execution; \
         narrow the selector, shorten the range or raise the step"
            .to_owned(),
    )
}

/// The latest sample in `(time - LOOKBACK_MS, time]`: the value an instant
/// selector reports at `time`. Of samples sharing a millisecond, the last
/// stored.
fn latest(samples: &[RawSample], time: i64) -> Option<&RawSample> {
    let end = samples.partition_point(|sample| sample.time <= time);
    let candidate = samples.get(end.checked_sub(1)?)?;
    (candidate.time > time - LOOKBACK_MS).then_some(candidate)
}

/// The samples in `(time - range_ms, time]`: left-open, right-closed.
fn window(samples: &[RawSample], time: i64, range_ms: i64) -> &[RawSample] {
    let start = samples.partition_point(|sample| sample.time <= time.saturating_sub(range_ms));
    let end = samples.partition_point(|sample| sample.time <= time);
    samples.get(start..end).unwrap_or(&[])
}

fn over_time(function: OverTime, window: &[RawSample], metric: Metric) -> Option<f64> {
    let mut values = window.iter().map(|sample| metric.of(sample));
    let first = values.next()?;
    Some(match function {
        OverTime::Count => window.len() as f64,
        OverTime::Min => values.fold(first, f64::min),
        OverTime::Max => values.fold(first, f64::max),
        OverTime::Avg => {
            // Prometheus 3: a Kahan-Neumaier sum divided by the count.
            let mut sum = KahanSum::default();
            sum.add(first);
            values.for_each(|value| sum.add(value));
            sum.sum / window.len() as f64 + sum.compensation / window.len() as f64
        }
    })
}

/// Prometheus's `kahanSumInc`: Neumaier's compensated summation.
#[derive(Default)]
struct KahanSum {
    sum: f64,
    compensation: f64,
}

impl KahanSum {
    fn add(&mut self, value: f64) {
        let total = self.sum + value;
        if total.is_infinite() {
            self.compensation = 0.0;
        } else if self.sum.abs() >= value.abs() {
            self.compensation += (self.sum - total) + value;
        } else {
            self.compensation += (value - total) + self.sum;
        }
        self.sum = total;
    }
}

fn check_unique(labels: &[Labels]) -> Result<(), QueryError> {
    let mut seen = BTreeSet::new();
    for labels in labels {
        if !seen.insert(labels) {
            return Err(QueryError::Execution(
                "vector cannot contain metrics with the same labelset".to_owned(),
            ));
        }
    }
    Ok(())
}

fn group_labels(labels: &Labels, grouping: &Grouping) -> Labels {
    match grouping {
        Grouping::By(names) => labels
            .iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
        Grouping::Without(names) => labels
            .iter()
            .filter(|(name, _)| name.as_str() != METRIC_NAME && !names.contains(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect(),
    }
}

fn aggregate(op: Aggregation, grouping: &Grouping, input: Columns, steps: &Steps) -> Columns {
    let mut groups: Vec<Labels> = Vec::new();
    let mut group_index: HashMap<Labels, usize> = HashMap::new();
    let group_of: Vec<usize> = input
        .labels
        .iter()
        .map(|labels| {
            let key = group_labels(labels, grouping);
            *group_index.entry(key.clone()).or_insert_with(|| {
                groups.push(key);
                groups.len() - 1
            })
        })
        .collect();

    if let Aggregation::TopK(k) = op {
        // Each step keeps, per group, the k highest values (of equal
        // values, those of the series first in label order); the series
        // keep all their labels.
        let k = k as i64;
        let mut values = vec![vec![None; steps.count]; input.labels.len()];
        for step in 0..steps.count {
            let mut candidates: Vec<Vec<(usize, f64)>> = vec![Vec::new(); groups.len()];
            for (series, series_values) in input.values.iter().enumerate() {
                if let Some(value) = series_values[step] {
                    candidates[group_of[series]].push((series, value));
                }
            }
            for mut group in candidates {
                group.sort_by(|a, b| b.1.total_cmp(&a.1));
                let keep = usize::try_from(k.max(0)).unwrap_or(usize::MAX);
                for (series, value) in group.into_iter().take(keep) {
                    values[series][step] = Some(value);
                }
            }
        }
        return Columns {
            labels: input.labels,
            values,
        };
    }

    let mut values = vec![vec![None; steps.count]; groups.len()];
    for step in 0..steps.count {
        let mut states: Vec<Option<(KahanSum, f64, f64, usize)>> = Vec::new();
        states.resize_with(groups.len(), || None);
        for (series, series_values) in input.values.iter().enumerate() {
            let Some(value) = series_values[step] else {
                continue;
            };
            let state = states[group_of[series]]
                .get_or_insert_with(|| (KahanSum::default(), f64::INFINITY, f64::NEG_INFINITY, 0));
            state.0.add(value);
            state.1 = state.1.min(value);
            state.2 = state.2.max(value);
            state.3 += 1;
        }
        for (group, state) in states.into_iter().enumerate() {
            let Some((sum, min, max, count)) = state else {
                continue;
            };
            values[group][step] = Some(match op {
                Aggregation::Avg => (sum.sum + sum.compensation) / count as f64,
                Aggregation::Min => min,
                Aggregation::Max => max,
                Aggregation::Count => count as f64,
                Aggregation::TopK(_) => continue,
            });
        }
    }
    Columns {
        labels: groups,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn server(name: &str, samples: &[(i64, f64, f64)]) -> ServerSamples {
        ServerSamples {
            name: name.to_owned(),
            samples: samples
                .iter()
                .map(|&(time, cpu, ram)| RawSample { time, cpu, ram })
                .collect(),
        }
    }

    /// web-1: cpu 10 at 0s, 20 at 30s, 30 at 60s, 40 at 90s.
    /// web-2: cpu 50 at 60s. db-1: cpu 70 at 0s. RAM is cpu + 1.
    fn data() -> Vec<ServerSamples> {
        vec![
            server("db-1", &[(0, 70.0, 71.0)]),
            server(
                "web-1",
                &[
                    (0, 10.0, 11.0),
                    (30_000, 20.0, 21.0),
                    (60_000, 30.0, 31.0),
                    (90_000, 40.0, 41.0),
                ],
            ),
            server("web-2", &[(60_000, 50.0, 51.0)]),
        ]
    }

    fn instant(query: &str, time: i64) -> Vec<(Labels, f64)> {
        match Query::parse(query)
            .unwrap()
            .evaluate(&data(), &Steps::instant(time))
            .unwrap()
        {
            Outcome::Series(series) => series
                .into_iter()
                .map(|series| {
                    assert_eq!(series.points.len(), 1);
                    assert_eq!(series.points[0].0, time);
                    (series.labels, series.points[0].1)
                })
                .collect(),
            Outcome::Scalar(_) => panic!("a scalar"),
        }
    }

    fn servers_and_values(query: &str, time: i64) -> Vec<(String, f64)> {
        instant(query, time)
            .into_iter()
            .map(|(labels, value)| (labels.get("server").cloned().unwrap_or_default(), value))
            .collect()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn bad_data(query: &str) -> String {
        match Query::parse(query) {
            Err(QueryError::BadData(message)) => message,
            other => panic!("{query}: expected bad_data, got {other:?}"),
        }
    }

    #[test]
    fn over_time_windows_are_left_open_and_right_closed() {
        // (0, 60s] holds 30s and 60s, not the sample at 0.
        assert_eq!(
            servers_and_values(
                "avg_over_time(sperform_cpu_percent{server=\"web-1\"}[1m])",
                MINUTE
            ),
            vec![("web-1".to_owned(), 25.0)]
        );
        // (-1ms, 59.999s] holds 0s and 30s.
        assert_eq!(
            servers_and_values(
                "avg_over_time(sperform_cpu_percent{server=\"web-1\"}[1m])",
                MINUTE - 1
            ),
            vec![("web-1".to_owned(), 15.0)]
        );
        assert_eq!(
            servers_and_values(
                "count_over_time(sperform_cpu_percent{server=\"web-1\"}[90s])",
                90_000
            ),
            vec![("web-1".to_owned(), 3.0)]
        );
        assert_eq!(
            servers_and_values(
                "min_over_time(sperform_ram_percent{server=\"web-1\"}[1m])",
                90_000
            ),
            vec![("web-1".to_owned(), 31.0)]
        );
        assert_eq!(
            servers_and_values(
                "max_over_time(sperform_ram_percent{server=\"web-1\"}[1m])",
                90_000
            ),
            vec![("web-1".to_owned(), 41.0)]
        );
    }

    #[test]
    fn a_window_without_samples_gives_no_point() {
        let query =
            Query::parse("avg_over_time(sperform_cpu_percent{server=\"web-2\"}[30s])").unwrap();
        let steps = Steps::range(0, 120_000, 30_000).unwrap();
        let Outcome::Series(series) = query.evaluate(&data(), &steps).unwrap() else {
            panic!("a scalar");
        };
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].labels, labels(&[("server", "web-2")]));
        assert_eq!(series[0].points, vec![(60_000, 50.0)]);
    }

    #[test]
    fn an_instant_selector_takes_the_latest_sample_of_the_last_five_minutes() {
        let expected_labels = series_labels(CPU_METRIC, "web-2");
        assert_eq!(
            instant(
                "sperform_cpu_percent{server=\"web-2\"}",
                60_000 + LOOKBACK_MS - 1
            ),
            vec![(expected_labels, 50.0)]
        );
        // Exactly five minutes later the sample is out of (t - 5m, t].
        assert!(
            instant(
                "sperform_cpu_percent{server=\"web-2\"}",
                60_000 + LOOKBACK_MS
            )
            .is_empty()
        );
        assert!(instant("sperform_cpu_percent{server=\"web-2\"}", 59_999).is_empty());
        assert_eq!(
            servers_and_values("sperform_cpu_percent{server=\"web-1\"}", 75_000),
            vec![("web-1".to_owned(), 30.0)]
        );
    }

    #[test]
    fn matchers_select_servers_and_regexes_are_anchored() {
        let names = |query: &str| -> Vec<String> {
            servers_and_values(query, MINUTE)
                .into_iter()
                .map(|(name, _)| name)
                .collect()
        };
        assert_eq!(names("sperform_cpu_percent"), ["db-1", "web-1", "web-2"]);
        assert_eq!(
            names("sperform_cpu_percent{server!=\"web-1\"}"),
            ["db-1", "web-2"]
        );
        assert_eq!(
            names("sperform_cpu_percent{server=~\"web-.*\"}"),
            ["web-1", "web-2"]
        );
        assert_eq!(
            names("sperform_cpu_percent{server=~\"web\"}"),
            Vec::<String>::new()
        );
        assert_eq!(names("sperform_cpu_percent{server!~\"web-.\"}"), ["db-1"]);
        assert_eq!(
            names("sperform_cpu_percent{job=\"\"}"),
            ["db-1", "web-1", "web-2"]
        );
        assert_eq!(
            names("sperform_cpu_percent{job=\"x\"}"),
            Vec::<String>::new()
        );
        assert!(instant("sperform_disk_percent", MINUTE).is_empty());
        let both = instant("{__name__=~\"sperform_.*\",server=\"web-2\"}", MINUTE);
        assert_eq!(
            both,
            vec![
                (series_labels(CPU_METRIC, "web-2"), 50.0),
                (series_labels(RAM_METRIC, "web-2"), 51.0)
            ]
        );
    }

    #[test]
    fn functions_and_aggregations_drop_the_metric_name() {
        let (labels_of_function, _) = instant(
            "max_over_time(sperform_cpu_percent{server=\"db-1\"}[5m])",
            MINUTE,
        )
        .remove(0);
        assert_eq!(labels_of_function, labels(&[("server", "db-1")]));
        assert_eq!(
            instant(
                "max by (server) (sperform_cpu_percent{server=\"db-1\"})",
                MINUTE
            ),
            vec![(labels(&[("server", "db-1")]), 70.0)]
        );
        assert_eq!(
            instant(
                "max without () (sperform_cpu_percent{server=\"db-1\"})",
                MINUTE
            ),
            vec![(labels(&[("server", "db-1")]), 70.0)]
        );
    }

    #[test]
    fn aggregations_with_and_without_by() {
        assert_eq!(
            instant("avg(sperform_cpu_percent)", MINUTE),
            vec![(Labels::new(), 50.0)]
        );
        assert_eq!(
            instant("min(sperform_cpu_percent)", MINUTE),
            vec![(Labels::new(), 30.0)]
        );
        assert_eq!(
            instant("max(sperform_cpu_percent)", MINUTE),
            vec![(Labels::new(), 70.0)]
        );
        assert_eq!(
            instant("count(sperform_cpu_percent)", MINUTE),
            vec![(Labels::new(), 3.0)]
        );
        assert_eq!(
            servers_and_values(
                "avg by (server) (avg_over_time(sperform_cpu_percent[2m]))",
                90_000
            ),
            vec![
                ("db-1".to_owned(), 70.0),
                ("web-1".to_owned(), 25.0),
                ("web-2".to_owned(), 50.0)
            ]
        );
        assert_eq!(
            instant("count by (__name__) ({__name__=~\"sperform_.+\"})", MINUTE),
            vec![
                (labels(&[("__name__", CPU_METRIC)]), 3.0),
                (labels(&[("__name__", RAM_METRIC)]), 3.0)
            ]
        );
        // Nested: the highest of the per-server means.
        assert_eq!(
            instant(
                "max(avg by (server) (avg_over_time(sperform_cpu_percent[2m])))",
                90_000
            ),
            vec![(Labels::new(), 70.0)]
        );
    }

    #[test]
    fn topk_keeps_the_highest_series_with_their_labels() {
        assert_eq!(
            instant("topk(2, sperform_cpu_percent)", MINUTE),
            vec![
                (series_labels(CPU_METRIC, "db-1"), 70.0),
                (series_labels(CPU_METRIC, "web-2"), 50.0)
            ]
        );
        assert!(instant("topk(0, sperform_cpu_percent)", MINUTE).is_empty());
        assert_eq!(
            instant(
                "topk by (__name__) (1, {__name__=~\"sperform_.+\"})",
                MINUTE
            ),
            vec![
                (series_labels(RAM_METRIC, "db-1"), 71.0),
                (series_labels(CPU_METRIC, "db-1"), 70.0)
            ]
        );
        // Over a range, a series has points only where it was in the top k.
        let query = Query::parse("topk(1, sperform_cpu_percent{server=~\"web-.\"})").unwrap();
        let steps = Steps::range(30_000, 90_000, 30_000).unwrap();
        let Outcome::Series(series) = query.evaluate(&data(), &steps).unwrap() else {
            panic!("a scalar");
        };
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels, series_labels(CPU_METRIC, "web-1"));
        assert_eq!(series[0].points, vec![(30_000, 20.0)]);
        assert_eq!(series[1].points, vec![(60_000, 50.0), (90_000, 50.0)]);
    }

    #[test]
    fn avg_is_a_compensated_mean() {
        let samples = vec![server("a", &[(1, 0.1, 0.0), (2, 0.2, 0.0), (3, 0.3, 0.0)])];
        let query = Query::parse("avg_over_time(sperform_cpu_percent[1m])").unwrap();
        let Outcome::Series(series) = query.evaluate(&samples, &Steps::instant(3)).unwrap() else {
            panic!("a scalar");
        };
        // Naive left-to-right summation gives 0.20000000000000004.
        assert_eq!(series[0].points, vec![(3, 0.2)]);
    }

    #[test]
    fn number_literals_are_scalars() {
        let query = Query::parse("1 + 1").unwrap();
        assert_eq!(
            query
                .evaluate(&[], &Steps::range(0, 20_000, 10_000).unwrap())
                .unwrap(),
            Outcome::Scalar(vec![2.0; 3])
        );
        assert_eq!(
            Query::parse("-(2 ^ 3) % 5")
                .unwrap()
                .evaluate(&[], &Steps::instant(0))
                .unwrap(),
            Outcome::Scalar(vec![-3.0])
        );
    }

    #[test]
    fn unsupported_constructs_are_named() {
        assert!(bad_data("rate(sperform_cpu_percent[5m])").contains("the function rate"));
        assert!(bad_data("sum(sperform_cpu_percent)").contains("the aggregation sum"));
        assert!(bad_data("sperform_cpu_percent[5m]").contains("a range selector outside"));
        assert!(bad_data("sperform_cpu_percent offset 5m").contains("the offset modifier"));
        assert!(bad_data("sperform_cpu_percent @ 100").contains("the @ modifier"));
        assert!(bad_data("sperform_cpu_percent + 1").contains("the binary operator +"));
        assert!(bad_data("avg_over_time(sperform_cpu_percent[5m:1m])").contains("subqueries"));
        assert!(
            bad_data("quantile(0.5, sperform_cpu_percent)").contains("the aggregation quantile")
        );
        assert!(!bad_data("sperform_cpu_percent{").is_empty());
        assert!(!bad_data("").is_empty());
    }

    #[test]
    fn identical_labelsets_after_dropping_the_name_are_an_execution_error() {
        let query = Query::parse("avg_over_time({__name__=~\"sperform_.+\"}[1m])").unwrap();
        assert_eq!(
            query.evaluate(&data(), &Steps::instant(MINUTE)),
            Err(QueryError::Execution(
                "vector cannot contain metrics with the same labelset".to_owned()
            ))
        );
    }

    #[test]
    fn range_steps_are_checked_like_prometheus() {
        assert_eq!(Steps::range(0, 60_000, 15_000).unwrap().count, 5);
        assert_eq!(Steps::range(0, 59_999, 15_000).unwrap().end(), 45_000);
        assert!(Steps::range(0, 11_000_000, 1_000).is_ok());
        let too_fine = Steps::range(0, 11_001_000, 1_000).unwrap_err();
        assert!(too_fine.message().contains("11,000 points"), "{too_fine:?}");
        assert!(matches!(
            Steps::range(10, 0, 1),
            Err(QueryError::BadData(_))
        ));
        assert!(matches!(
            Steps::range(0, 10, 0),
            Err(QueryError::BadData(_))
        ));
    }

    #[test]
    fn the_servers_read_are_those_a_selector_matches() {
        let names = vec!["db-1".to_owned(), "web-1".to_owned(), "web-2".to_owned()];
        let query =
            Query::parse("topk(1, avg_over_time(sperform_cpu_percent{server=~\"web-.+\"}[10m]))")
                .unwrap();
        assert_eq!(query.servers_read(&names), ["web-1", "web-2"]);
        assert_eq!(query.lookback_ms(), 10 * MINUTE);
        assert!(Query::parse("1").unwrap().servers_read(&names).is_empty());
    }

    #[test]
    fn match_parameters_are_selectors() {
        let servers = vec!["db-1".to_owned(), "web-1".to_owned()];
        let selector = Selector::parse("{server=\"web-1\"}").unwrap();
        assert_eq!(
            matching_series(&[selector], &servers),
            vec![
                series_labels(CPU_METRIC, "web-1"),
                series_labels(RAM_METRIC, "web-1")
            ]
        );
        assert!(Selector::parse("avg(sperform_cpu_percent)").is_err());
    }
}
