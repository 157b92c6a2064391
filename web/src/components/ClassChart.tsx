// Samples per class as horizontal bars, each split into train, val and test.
import type { ClassCount, Split } from "../api/types";
import { SPLITS } from "../api/types";
import { formatCount } from "../format";

const SPLIT_LABELS: Record<Split, string> = { train: "train", val: "validation", test: "test" };

function splitCount(entry: ClassCount, split: Split): number {
  return entry[split];
}

function classTotal(entry: ClassCount): number {
  return entry.total;
}

export function ClassChart({ classes }: { classes: ClassCount[] }) {
  if (classes.length === 0) return <p className="muted">No classes yet.</p>;
  const largest = Math.max(1, ...classes.map(classTotal));
  return (
    <div className="class-chart" aria-label="Samples per class and split">
      <div className="legend">
        {SPLITS.map((split) => (
          <span key={split} className="legend-item">
            <span className={`swatch split-${split}`} aria-hidden="true" />
            {SPLIT_LABELS[split]}
          </span>
        ))}
      </div>
      {classes.map((entry) => {
        const total = classTotal(entry);
        const title = SPLITS.map(
          (split) => `${SPLIT_LABELS[split]} ${splitCount(entry, split)}`,
        ).join(", ");
        return (
          <div key={entry.name} className="class-row" data-class={entry.name}>
            <span className="class-name truncate" title={entry.name}>
              {entry.name}
            </span>
            <span className="bar" title={title} style={{ width: `${(total / largest) * 100}%` }}>
              {SPLITS.map((split) => {
                const value = splitCount(entry, split);
                return value > 0 ? (
                  <span
                    key={split}
                    className={`bar-part split-${split}`}
                    style={{ flexGrow: value }}
                  />
                ) : null;
              })}
            </span>
            <span className="class-count numeric" title={title}>
              {formatCount(total)}
            </span>
          </div>
        );
      })}
    </div>
  );
}
