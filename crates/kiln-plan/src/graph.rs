//! The sealed plan: a petgraph DAG of steps plus an id → node map, and the builder that fills it,
//! deduplicating steps by key (same key ⇒ same node).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use kiln_syntax::span::Span;
use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::key::{CanonicalWriter, StepKey, ToolVersions};
use crate::step::{
    ExecInputs, HostRequirements, Owner, Step, StepId, StepInput, StepKind, StepParams,
};

/// A matrix cell of the plan and the step producing its image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedCell {
    /// Who: pipeline, image name, cell label.
    pub owner: Owner,
    /// The `convert` step whose `image` is the cell's output.
    pub output: StepId,
    /// True when the user selected it (false for ancestors pulled in by `--only`).
    pub selected: bool,
}

/// A validated, deduplicated DAG of steps. Built once, then read-only.
#[derive(Clone, Debug)]
pub struct Plan {
    graph: DiGraph<Step, &'static str>,
    by_id: HashMap<StepId, NodeIndex>,
    cells: Vec<PlannedCell>,
    tools: ToolVersions,
}

impl Plan {
    /// Steps in a topological order (producers before consumers); stable for the same input.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.graph.node_weights()
    }

    /// Number of steps.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// True when nothing is planned.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.by_id
            .get(&StepId(id.to_string()))
            .map(|&ix| &self.graph[ix])
    }

    /// The steps consuming an output of `id`.
    pub fn dependents(&self, id: &str) -> Vec<&Step> {
        let Some(&ix) = self.by_id.get(&StepId(id.to_string())) else {
            return Vec::new();
        };
        let mut out: Vec<&Step> = self
            .graph
            .neighbors_directed(ix, Direction::Outgoing)
            .map(|n| &self.graph[n])
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.dedup_by(|a, b| a.id == b.id);
        out
    }

    /// Every edge as `(producer id, consumer id, consumer's role)`, sorted.
    pub fn edges(&self) -> Vec<(&str, &str, &'static str)> {
        let mut out: Vec<_> = self
            .graph
            .edge_references()
            .map(|e| {
                (
                    self.graph[e.source()].id.as_str(),
                    self.graph[e.target()].id.as_str(),
                    *e.weight(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// The underlying graph (edges point from producer to consumer, weighted by the input role).
    pub fn graph(&self) -> &DiGraph<Step, &'static str> {
        &self.graph
    }

    /// The planned cells in planning order (parents before children).
    pub fn cells(&self) -> &[PlannedCell] {
        &self.cells
    }

    /// The tool versions the keys were computed with.
    pub fn tools(&self) -> &ToolVersions {
        &self.tools
    }

    /// Keeps only the steps `keep` says yes to, and everything they depend on.
    pub(crate) fn retain_ancestors_of(&mut self, roots: &[StepId]) {
        let mut needed = vec![false; self.graph.node_count()];
        let mut stack: Vec<NodeIndex> = roots
            .iter()
            .filter_map(|id| self.by_id.get(id).copied())
            .collect();
        while let Some(ix) = stack.pop() {
            if std::mem::replace(&mut needed[ix.index()], true) {
                continue;
            }
            stack.extend(self.graph.neighbors_directed(ix, Direction::Incoming));
        }
        let mut graph = DiGraph::with_capacity(0, 0);
        let mut map = vec![None; self.graph.node_count()];
        for ix in self.graph.node_indices() {
            if needed[ix.index()] {
                map[ix.index()] = Some(graph.add_node(self.graph[ix].clone()));
            }
        }
        for e in self.graph.edge_references() {
            if let (Some(a), Some(b)) = (map[e.source().index()], map[e.target().index()]) {
                graph.add_edge(a, b, *e.weight());
            }
        }
        self.by_id = graph
            .node_indices()
            .map(|ix| (graph[ix].id.clone(), ix))
            .collect();
        self.cells.retain(|c| self.by_id.contains_key(&c.output));
        self.graph = graph;
    }
}

/// A step about to be added.
pub(crate) struct NewStep {
    pub params: StepParams,
    pub inputs: Vec<(&'static str, NodeIndex, &'static str)>,
    pub span: Span,
    pub host: HostRequirements,
    pub exec: ExecInputs,
}

/// Fills a [`Plan`]: computes each step's key and merges steps with equal keys.
pub(crate) struct Builder {
    graph: DiGraph<Step, &'static str>,
    by_key: HashMap<StepKey, NodeIndex, BuildHasherDefault<KeyHasher>>,
    by_id: HashMap<StepId, NodeIndex>,
    cells: Vec<PlannedCell>,
    tools: ToolVersions,
    /// Reused for every step's description.
    writer: CanonicalWriter,
}

impl Builder {
    pub fn new(tools: ToolVersions) -> Self {
        Builder {
            graph: DiGraph::new(),
            by_key: HashMap::default(),
            by_id: HashMap::new(),
            cells: Vec::new(),
            tools,
            writer: CanonicalWriter::default(),
        }
    }

    /// The version of qemu-img when it shapes this step's output bytes.
    fn qemu_img_for(&self, params: &StepParams) -> Option<&str> {
        let uses_qemu_img = match params {
            StepParams::CreateDisk(_) | StepParams::Convert(_) => true,
            StepParams::Customize(c) => c.grow_to_bytes.is_some(),
            _ => false,
        };
        uses_qemu_img.then(|| self.tools.qemu_img.as_deref().unwrap_or("absent"))
    }

    /// Adds a step for `owner` (or finds the equal one) and returns its node.
    pub fn add(&mut self, owner: &Owner, new: NewStep) -> NodeIndex {
        let kind: StepKind = new.params.kind();
        // The description is written into a reused buffer; only a new step keeps a copy.
        let mut writer = std::mem::take(&mut self.writer);
        writer.clear();
        // A secret enters the key as an input whose digest is its keyed hash (`secret:<role>`):
        // rotating it rebuilds this step and, through input keys, everything after it.
        let secret_roles: Vec<(String, StepKey)> = new
            .exec
            .secrets
            .iter()
            .filter_map(|s| {
                s.mac
                    .map(|m| (format!("secret:{}", s.role), StepKey::from_bytes(m)))
            })
            .collect();
        writer.describe(
            kind.name(),
            kind.runner_version(),
            &new.params,
            new.inputs
                .iter()
                .map(|(role, ix, _)| (*role, self.graph[*ix].key))
                .chain(secret_roles.iter().map(|(r, k)| (r.as_str(), *k))),
            self.qemu_img_for(&new.params).map(|v| ("qemu-img", v)),
        );
        let key = StepKey::of_description(writer.as_str());
        self.writer = writer;
        if let Some(&ix) = self.by_key.get(&key) {
            // Cells are lowered one after another (all of a cell's steps before the next cell's),
            // so an owner already recorded on this step is its last one. Checking only the last
            // keeps this O(1): one disk step can be shared by thousands of cells.
            let owners = &mut self.graph[ix].owners;
            let same = |o: &Owner| o.pipeline_index == owner.pipeline_index && o.cell == owner.cell;
            if !owners.last().is_some_and(same) {
                debug_assert!(
                    !owners.iter().any(same),
                    "cell `{}` of pipeline {} is lowered in two pieces",
                    owner.cell,
                    owner.pipeline_index
                );
                owners.push(owner.clone());
            }
            return ix;
        }
        let mut id = StepId(format!("{}/{}", owner.image, kind.name()));
        let mut n = 2;
        while self.by_id.contains_key(&id) {
            id = StepId(format!("{}/{}~{n}", owner.image, kind.name()));
            n += 1;
        }
        let inputs = new
            .inputs
            .iter()
            .map(|(role, ix, artifact)| StepInput {
                role,
                step: self.graph[*ix].id.clone(),
                artifact,
            })
            .collect();
        let step = Step {
            id: id.clone(),
            key,
            params: new.params,
            inputs,
            owners: vec![owner.clone()],
            span: new.span,
            host: new.host,
            exec: new.exec,
            description: self.writer.as_str().to_owned(),
        };
        let ix = self.graph.add_node(step);
        for (role, from, _) in new.inputs {
            self.graph.add_edge(from, ix, role);
        }
        self.by_key.insert(key, ix);
        self.by_id.insert(id, ix);
        ix
    }

    /// The id of a node.
    pub fn id(&self, ix: NodeIndex) -> &StepId {
        &self.graph[ix].id
    }

    /// Records a planned cell.
    pub fn cell(&mut self, cell: PlannedCell) {
        self.cells.push(cell);
    }

    /// Seals the plan.
    pub fn finish(self) -> Plan {
        Plan {
            graph: self.graph,
            by_id: self.by_id,
            cells: self.cells,
            tools: self.tools,
        }
    }
}

/// Hashes step keys by folding their bytes into one word: they are sha256 digests, already
/// uniformly distributed, so SipHash's work would buy nothing.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(23) ^ u64::from_le_bytes(word);
        }
    }
}
