// Small building blocks shared by the pages.
import { useEffect, useId, useRef } from "react";
import type { ReactNode } from "react";

import { formatPercent } from "../format";

type Tone = "neutral" | "good" | "busy" | "bad" | "muted";

const STATUS_TONES: Record<string, Tone> = {
  ready: "good",
  succeeded: "good",
  importing: "busy",
  running: "busy",
  queued: "muted",
  failed: "bad",
  cancelled: "muted",
};

/** A coloured word for a dataset or job status. */
export function StatusBadge({ status }: { status: string }) {
  const tone = STATUS_TONES[status] ?? "neutral";
  return (
    <span className={`badge badge-${tone}`} data-status={status}>
      {status}
    </span>
  );
}

/** A thin bar; `value` is a fraction, or null for "working, amount unknown". */
export function ProgressBar({ value, label }: { value: number | null; label: string }) {
  const known = value !== null;
  return (
    <div
      className={`progress ${known ? "" : "progress-indeterminate"}`}
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={known ? Math.round(value * 100) : undefined}
    >
      <div className="progress-fill" style={{ width: known ? formatPercent(value) : "35%" }} />
    </div>
  );
}

/** A problem the person should read; `onRetry` offers to try again. */
export function ErrorNotice({ message, onRetry }: { message: string; onRetry?: () => void }) {
  return (
    <div className="notice notice-error" role="alert">
      <span>{message}</span>
      {onRetry && (
        <button type="button" className="button-link" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}

/** A quiet confirmation. */
export function SuccessNotice({ children }: { children: ReactNode }) {
  return (
    <div className="notice notice-success" role="status">
      <span>{children}</span>
    </div>
  );
}

/** A titled white panel. */
export function Card({
  title,
  actions,
  children,
  className = "",
}: {
  title?: ReactNode;
  actions?: ReactNode;
  children: ReactNode;
  className?: string;
}) {
  return (
    <section className={`card ${className}`}>
      {(title || actions) && (
        <header className="card-header">
          {title && <h2>{title}</h2>}
          {actions && <div className="card-actions">{actions}</div>}
        </header>
      )}
      {children}
    </section>
  );
}

/** Previous / next through pages of `pageSize` out of `total`. */
export function Pager({
  page,
  pageSize,
  total,
  onPage,
}: {
  page: number;
  pageSize: number;
  total: number;
  onPage: (page: number) => void;
}) {
  const pages = Math.max(1, Math.ceil(total / pageSize));
  if (pages <= 1) return null;
  return (
    <nav className="pager" aria-label="Pages">
      <button
        type="button"
        className="button-secondary"
        disabled={page <= 1}
        onClick={() => onPage(page - 1)}
      >
        Previous
      </button>
      <span>
        Page {page} of {pages}
      </span>
      <button
        type="button"
        className="button-secondary"
        disabled={page >= pages}
        onClick={() => onPage(page + 1)}
      >
        Next
      </button>
    </nav>
  );
}

/** A modal dialog built on the browser's <dialog>; Escape and the close button call `onClose`. */
export function Dialog({
  title,
  onClose,
  children,
}: {
  title: string;
  onClose: () => void;
  children: ReactNode;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const dialog = ref.current;
    if (dialog && !dialog.open) dialog.showModal();
  }, []);
  return (
    <dialog
      ref={ref}
      className="dialog"
      aria-label={title}
      onCancel={(event) => {
        event.preventDefault();
        onClose();
      }}
    >
      <header className="dialog-header">
        <h2>{title}</h2>
        <button type="button" className="button-icon" aria-label="Close" onClick={onClose}>
          ×
        </button>
      </header>
      {children}
    </dialog>
  );
}

/** A centred line while something loads. */
export function Loading({ what }: { what: string }) {
  return <p className="loading">Loading {what}…</p>;
}

/**
 * A form field: the label names the control, and the hint describes it without
 * becoming part of its name. `children` receives the ids to put on the control.
 */
export function Field({
  label,
  hint,
  children,
}: {
  label: ReactNode;
  hint?: ReactNode;
  children: (ids: { id: string; "aria-describedby"?: string }) => ReactNode;
}) {
  const id = useId();
  const hintId = `${id}-hint`;
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      {children(hint ? { id, "aria-describedby": hintId } : { id })}
      {hint && (
        <span id={hintId} className="hint">
          {hint}
        </span>
      )}
    </div>
  );
}
