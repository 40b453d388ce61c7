import {
  Background,
  Controls,
  Handle,
  MarkerType,
  MiniMap,
  Position,
  ReactFlow,
  ReactFlowProvider,
  useReactFlow,
  type Edge,
  type Node,
  type NodeProps,
} from '@xyflow/react';
import '@xyflow/react/dist/style.css';
import { memo, useCallback, useEffect, useMemo, useRef, useState } from 'react';
import type { State, Waiting } from '../api/types';
import { dagEdges, layoutDag, structureKey, LARGE_DAG, NODE_HEIGHT, NODE_WIDTH } from '../lib/layout';
import { stateColor, stateLabel, stateTextColor } from '../lib/states';

export interface GraphStep {
  name: string;
  handler?: string;
  dependsOn?: string[];
  state?: State;
  attempts?: number;
  maxAttempts?: number;
  waiting?: Waiting | null;
}

type StepNodeData = {
  step: GraphStep;
  critical: boolean;
  plain: boolean;
};

type StepNode = Node<StepNodeData, 'step'>;

/** waitTag marks a node whose step waits on something other than its parents. */
function waitTag(w: Waiting | null | undefined): string {
  if (!w?.reason || w.reason === 'parents') return '';
  return w.reason === 'no_executor' || w.reason === 'capacity' ? `⚠ ${w.reason}` : `◷ ${w.reason}`;
}

const StepNodeView = memo(function StepNodeView({ data, selected }: NodeProps<StepNode>) {
  const { step, critical, plain } = data;
  const bg = plain ? '#ffffff' : stateColor(step.state);
  const fg = plain ? '#1d2330' : stateTextColor(step.state);
  const detail = plain
    ? step.handler
    : [
        stateLabel(step.state),
        step.attempts ? `${step.attempts}/${step.maxAttempts ?? '?'}` : '',
        waitTag(step.waiting),
      ]
        .filter(Boolean)
        .join(' · ');
  return (
    <div
      className={`dag-node${selected ? ' selected' : ''}${critical ? ' critical' : ''}`}
      style={{ background: bg, color: fg, width: NODE_WIDTH, height: NODE_HEIGHT }}
      data-step={step.name}
      data-state={step.state ?? ''}
      title={`${step.name} (${step.handler ?? '?'})`}
    >
      <Handle type="target" position={Position.Left} isConnectable={false} />
      <div className="dag-node-name">{step.name}</div>
      <div className="dag-node-detail">{detail}</div>
      <Handle type="source" position={Position.Right} isConnectable={false} />
    </div>
  );
});

const nodeTypes = { step: StepNodeView };

/** MINIMAP_FROM is the step count above which a DAG no longer fits readably and gets a minimap. */
const MINIMAP_FROM = 12;

export interface DagGraphProps {
  steps: GraphStep[];
  /** plain draws a template's DAG: no states. */
  plain?: boolean;
  selected?: string;
  onSelect?: (name: string) => void;
  /** critical is the critical path, root first. */
  critical?: string[];
  height?: number | string;
}

/**
 * DagGraph draws a DAG of steps left to right, laid out by dagre, coloured
 * by state, with zoom, pan, a minimap and fit-to-view for large DAGs.
 */
export function DagGraph(props: DagGraphProps) {
  return (
    <ReactFlowProvider>
      <Graph {...props} />
    </ReactFlowProvider>
  );
}

const FIT = { padding: 0.08, maxZoom: 1.2 };

/**
 * useViewport shows the whole DAG at first, or, when a step is already
 * chosen (from the address), that step close enough to read; and it brings
 * a step chosen later elsewhere (the waterfall, a parent's chip) into view.
 * data-placed on the graph says the first view is set, for tests that
 * click nodes.
 */
function useViewport(
  selected: string | undefined,
  positions: Map<string, { x: number; y: number }>,
  clicked: { current: string | undefined },
) {
  const flow = useReactFlow();
  const ready = useRef(false);
  // placed turns true once the first view is set: what is on screen then
  // stays where it is until someone zooms or pans.
  const [placed, setPlaced] = useState(false);
  const center = useCallback(
    (name: string, duration: number) => {
      const p = positions.get(name);
      if (!p) return undefined;
      return flow.setCenter(p.x + NODE_WIDTH / 2, p.y + NODE_HEIGHT / 2, { zoom: Math.max(flow.getZoom(), 0.9), duration });
    },
    [flow, positions],
  );
  const onInit = useCallback(() => {
    ready.current = true;
    const moved = (selected && center(selected, 0)) || flow.fitView(FIT);
    void Promise.resolve(moved).then(() => setPlaced(true));
  }, [flow, center]);
  useEffect(() => {
    // A node clicked in the graph is on screen already: the view stays.
    if (ready.current && selected && selected !== clicked.current) void center(selected, 250);
  }, [selected, center, clicked]);
  return { onInit, placed };
}

function Graph({ steps, plain, selected, onSelect, critical, height = 420 }: DagGraphProps) {
  const key = structureKey(steps);
  // Laid out once per shape; state changes only recolour.
  const layout = useMemo(() => layoutDag(steps), [key]);
  const criticalSet = useMemo(() => new Set(critical ?? []), [critical]);
  const criticalEdges = useMemo(() => {
    const s = new Set<string>();
    const c = critical ?? [];
    for (let i = 1; i < c.length; i++) s.add(`${c[i - 1]}->${c[i]}`);
    return s;
  }, [critical]);
  const nodes: StepNode[] = useMemo(
    () =>
      steps.map((s) => ({
        id: s.name,
        type: 'step',
        position: layout.positions.get(s.name) ?? { x: 0, y: 0 },
        data: { step: s, critical: criticalSet.has(s.name), plain: !!plain },
        selected: s.name === selected,
        // Known sizes let the minimap and fit-view work before the nodes are measured.
        width: NODE_WIDTH,
        height: NODE_HEIGHT,
        draggable: false,
        connectable: false,
      })),
    [steps, layout, criticalSet, plain, selected],
  );
  const edges: Edge[] = useMemo(
    () =>
      dagEdges(steps).map((e) => {
        const hot = criticalEdges.has(e.id);
        return {
          ...e,
          animated: hot && !plain,
          style: hot ? { stroke: '#c2410c', strokeWidth: 2.5 } : { stroke: '#8a94a6', strokeWidth: 1.2 },
          markerEnd: { type: MarkerType.ArrowClosed, width: 14, height: 14, color: hot ? '#c2410c' : '#8a94a6' },
        };
      }),
    [key, criticalEdges, plain],
  );
  const large = steps.length > LARGE_DAG;
  const clicked = useRef<string | undefined>(undefined);
  const { onInit, placed } = useViewport(selected, layout.positions, clicked);
  return (
    <div className="dag" style={{ height }} data-nodes={steps.length} data-placed={placed ? 'true' : undefined}>
      <ReactFlow
        key={key}
        nodes={nodes}
        edges={edges}
        nodeTypes={nodeTypes}
        onNodeClick={(_, n) => {
          clicked.current = n.id;
          onSelect?.(n.id);
        }}
        nodesDraggable={false}
        nodesConnectable={false}
        elementsSelectable={!!onSelect}
        onlyRenderVisibleElements={large}
        onInit={onInit}
        minZoom={0.02}
        maxZoom={2.5}
      >
        <Background gap={24} size={1} />
        <Controls showInteractive={false} />
        {steps.length > MINIMAP_FROM && (
          <MiniMap
            pannable
            zoomable
            nodeColor={(n) => (plain ? '#c8ced8' : stateColor((n.data as StepNodeData).step.state))}
            nodeStrokeWidth={0}
          />
        )}
      </ReactFlow>
    </div>
  );
}
