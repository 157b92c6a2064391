// Live job events over the WebSocket at /ws/training, with replay and reconnection.
import { useEffect, useState } from "react";

/** What any message from the hub may carry; refusals have no `seq`. */
interface Message {
  type: string;
  seq?: number;
  jobId?: number;
  progress?: number;
  currentEpoch?: number;
  totalEpochs?: number;
  epoch?: number;
  /** Numbers per metric, and flags such as `overfitting` as booleans. */
  metrics?: Record<string, MetricValue>;
  results?: Record<string, unknown>;
  error?: string;
  message?: string;
  stage?: string;
  done?: number;
  total?: number;
  /** A search trial's number, its status (`running`, `epoch`, `complete`...) and value. */
  trial?: number;
  status?: string;
  value?: number;
  params?: Record<string, unknown>;
}

/** A metric's value: a number, or a flag the run raised. */
export type MetricValue = number | boolean;

/** One stored event of a subscribed job, numbered by `seq`. */
export type LiveEvent = Message & { seq: number };

export type StreamState = "connecting" | "live" | "reconnecting" | "ended";

/** What a page sees of a job's stream: every event once, in order, and the latest progress. */
export interface JobStream {
  events: LiveEvent[];
  progress: number | null;
  outcome: "completed" | "error" | null;
  state: StreamState;
  /** A refusal of the subscription itself, such as an unknown job. */
  problem: string | null;
}

const EMPTY: JobStream = {
  events: [],
  progress: null,
  outcome: null,
  state: "connecting",
  problem: null,
};
const RETRY_MS = [500, 1000, 2000, 4000, 8000];

function socketUrl(): string {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/ws/training`;
}

function parseMessage(raw: unknown): Message | null {
  if (typeof raw !== "string") return null;
  try {
    const value: unknown = JSON.parse(raw);
    if (typeof value !== "object" || value === null) return null;
    const message = value as Message;
    return typeof message.type === "string" ? message : null;
  } catch {
    return null;
  }
}

function isEvent(message: Message): message is LiveEvent {
  return typeof message.seq === "number";
}

/** Folds one event into the stream; a replayed event (same seq) is ignored. */
export function applyEvent(stream: JobStream, event: LiveEvent): JobStream {
  if (stream.events.some((seen) => seen.seq === event.seq)) return stream;
  const events = [...stream.events, event].sort((a, b) => a.seq - b.seq);
  let { progress, outcome } = stream;
  if (typeof event.progress === "number") progress = event.progress;
  if (event.type === "completed") [progress, outcome] = [1, "completed"];
  if (event.type === "error") outcome = "error";
  return { ...stream, events, progress, outcome };
}

/**
 * Subscribes to a job's events while `jobId` is set. The server first replays
 * what the job already emitted; after a dropped connection the subscription
 * resumes after the last `seq` seen, so nothing is lost or shown twice.
 */
export function useJobStream(jobId: number | null): JobStream {
  const [stream, setStream] = useState<JobStream>(EMPTY);

  useEffect(() => {
    setStream(EMPTY);
    if (jobId === null) return;
    let socket: WebSocket | null = null;
    let attempt = 0;
    let timer: number | undefined;
    let closed = false;
    let finished = false;
    let lastSeq = 0;

    const connect = (): void => {
      socket = new WebSocket(socketUrl());
      socket.onopen = () => {
        attempt = 0;
        socket?.send(JSON.stringify({ type: "subscribe", jobId, afterSeq: lastSeq }));
        setStream((s) => ({ ...s, state: "live" }));
      };
      socket.onmessage = (raw: MessageEvent) => {
        const message = parseMessage(raw.data);
        if (!message || (message.jobId !== undefined && message.jobId !== jobId)) return;
        if (!isEvent(message)) {
          if (message.type === "error")
            setStream((s) => ({ ...s, problem: message.error ?? "Live updates failed." }));
          return;
        }
        lastSeq = Math.max(lastSeq, message.seq);
        if (message.type === "completed" || message.type === "error") finished = true;
        setStream((s) => applyEvent(s, message));
      };
      socket.onclose = () => {
        if (closed || finished) {
          setStream((s) => ({ ...s, state: "ended" }));
          return;
        }
        setStream((s) => ({ ...s, state: "reconnecting" }));
        timer = window.setTimeout(connect, RETRY_MS[Math.min(attempt++, RETRY_MS.length - 1)]);
      };
    };

    connect();
    return () => {
      closed = true;
      window.clearTimeout(timer);
      socket?.close();
    };
  }, [jobId]);

  return stream;
}

/** A one-line description of an event for logs and status lines. */
export function describeEvent(event: LiveEvent): string {
  if (typeof event.message === "string" && event.message) return event.message;
  switch (event.type) {
    case "progress": {
      const pct = Math.round((event.progress ?? 0) * 100);
      const stage = event.stage ? `${capitalize(event.stage)}: ` : "";
      const items = event.total ? ` (${event.done ?? 0} of ${event.total})` : "";
      const epoch = event.totalEpochs
        ? ` (epoch ${event.currentEpoch ?? 0} of ${event.totalEpochs})`
        : "";
      return `${stage}${pct}% done${items}${epoch}`;
    }
    case "metrics":
      return `Epoch ${event.epoch ?? "?"}: ${formatMetrics(event.metrics ?? {})}`;
    case "trial": {
      const value =
        typeof event.value === "number" ? `, validation accuracy ${event.value.toFixed(3)}` : "";
      const status =
        event.status === "epoch" ? `epoch ${event.epoch ?? "?"}` : (event.status ?? "?");
      return `Trial ${event.trial ?? "?"}: ${status}${value}`;
    }
    case "completed":
      return "Finished successfully.";
    case "error":
      return event.error ?? "The job failed.";
    default:
      return event.type;
  }
}

/** `trainLoss 0.41 · valAccuracy 0.88 · overfitting`: numbers, then the flags that are raised. */
export function formatMetrics(metrics: Record<string, MetricValue>): string {
  const entries = Object.entries(metrics);
  const numbers = entries.flatMap(([name, value]) =>
    typeof value === "number"
      ? [`${name} ${Number.isInteger(value) ? value : value.toFixed(3)}`]
      : [],
  );
  const flags = entries.flatMap(([name, value]) => (value === true ? [name] : []));
  return [...numbers, ...flags].join(" · ");
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
