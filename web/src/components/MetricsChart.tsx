// Small inline SVG line charts of training metrics per epoch: loss and accuracy, train and val.
import type { LiveEvent } from "../api/training";

const WIDTH = 320;
const HEIGHT = 160;
const PAD = { left: 40, right: 10, top: 10, bottom: 24 };

interface Series {
  name: string;
  className: string;
  points: [number, number][];
}

function seriesOf(rows: LiveEvent[], name: string, className: string): Series {
  const points = rows.flatMap((event): [number, number][] => {
    const value = event.metrics?.[name];
    return typeof value === "number" && event.epoch !== undefined ? [[event.epoch, value]] : [];
  });
  return { name, className, points };
}

function LineChart({ title, series }: { title: string; series: Series[] }) {
  const shown = series.filter((s) => s.points.length > 0);
  if (shown.length === 0) return null;
  const xs = shown.flatMap((s) => s.points.map(([x]) => x));
  const ys = shown.flatMap((s) => s.points.map(([, y]) => y));
  const [xMin, xMax] = [Math.min(...xs), Math.max(...xs)];
  const yMin = Math.min(0, ...ys);
  const yMax = Math.max(...ys) > yMin ? Math.max(...ys) : yMin + 1;
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (v: number) =>
    PAD.left + (xMax === xMin ? plotW / 2 : ((v - xMin) / (xMax - xMin)) * plotW);
  const y = (v: number) => PAD.top + plotH - ((v - yMin) / (yMax - yMin)) * plotH;
  return (
    <figure className="metric-chart">
      <svg viewBox={`0 0 ${WIDTH} ${HEIGHT}`} role="img" aria-label={`${title} per epoch`}>
        <line className="axis" x1={PAD.left} y1={PAD.top} x2={PAD.left} y2={PAD.top + plotH} />
        <line
          className="axis"
          x1={PAD.left}
          y1={PAD.top + plotH}
          x2={PAD.left + plotW}
          y2={PAD.top + plotH}
        />
        <text className="tick" x={PAD.left - 4} y={y(yMax) + 4} textAnchor="end">
          {yMax.toFixed(2)}
        </text>
        <text className="tick" x={PAD.left - 4} y={y(yMin)} textAnchor="end">
          {yMin.toFixed(2)}
        </text>
        <text className="tick" x={x(xMin)} y={HEIGHT - 6} textAnchor="middle">
          {xMin}
        </text>
        {xMax !== xMin && (
          <text className="tick" x={x(xMax)} y={HEIGHT - 6} textAnchor="middle">
            {xMax}
          </text>
        )}
        {shown.map((s) => (
          <g key={s.name} className={s.className}>
            <polyline points={s.points.map(([px, py]) => `${x(px)},${y(py)}`).join(" ")} />
            {s.points.map(([px, py]) => (
              <circle key={px} cx={x(px)} cy={y(py)} r={3}>
                <title>{`${s.name} epoch ${px}: ${py.toFixed(4)}`}</title>
              </circle>
            ))}
          </g>
        ))}
      </svg>
      <figcaption>
        <span className="strong">{title}</span>
        {shown.map((s) => (
          <span key={s.name} className="legend-item">
            <span className={`swatch ${s.className}`} aria-hidden="true" />
            {s.name}
          </span>
        ))}
      </figcaption>
    </figure>
  );
}

/** Loss and accuracy charts from the job's `metrics` events. */
export function MetricsCharts({ rows }: { rows: LiveEvent[] }) {
  return (
    <div className="metric-charts">
      <LineChart
        title="Loss"
        series={[
          seriesOf(rows, "trainLoss", "series-train"),
          seriesOf(rows, "valLoss", "series-val"),
        ]}
      />
      <LineChart
        title="Accuracy"
        series={[
          seriesOf(rows, "trainAccuracy", "series-train"),
          seriesOf(rows, "valAccuracy", "series-val"),
        ]}
      />
    </div>
  );
}
