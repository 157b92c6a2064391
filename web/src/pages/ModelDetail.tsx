// One model: its versions with lineage, input spec, model card, evaluations and a "Try it" box.
import { useState } from "react";
import type { ReactNode } from "react";

import { api, unwrap } from "../api/client";
import { describeError } from "../api/errors";
import { predictImage } from "../api/predict";
import type { EvaluationSummary, Model, ModelVersion, Predictions } from "../api/types";
import { Card, ErrorNotice, Loading, StatusBadge } from "../components/ui";
import { formatBytes, formatCount, formatPercent, formatTime } from "../format";
import { useResource } from "../resource";
import { href } from "../router";
import { formatLabel } from "./Models";
import { TrainDialog } from "./TrainDialog";

function Facts({ rows }: { rows: [string, ReactNode][] }) {
  return (
    <dl className="facts">
      {rows.map(([term, value]) => (
        <div key={term}>
          <dt>{term}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function numberOf(value: unknown): number | null {
  return typeof value === "number" ? value : null;
}

/** The version number a version id stands for among `versions`, as `v2`, or `#id`. */
function versionLabel(versions: ModelVersion[], id: number | null): string {
  if (id === null) return "—";
  const found = versions.find((v) => v.id === id);
  return found ? `v${found.number}` : `version #${id}`;
}

function Provenance({ version, versions }: { version: ModelVersion; versions: ModelVersion[] }) {
  const p = version.provenance;
  const kind = typeof p["kind"] === "string" ? p["kind"] : "unknown";
  if (kind === "trained") {
    const jobId = numberOf(p["jobId"]);
    return (
      <span data-provenance="trained">
        trained by{" "}
        {jobId === null ? "a job" : <a href={href({ page: "job", jobId })}>job #{jobId}</a>} from{" "}
        {versionLabel(versions, numberOf(p["fromVersionId"]))} on dataset version #
        {numberOf(p["datasetVersionId"]) ?? "?"}
      </span>
    );
  }
  if (kind === "uploaded") return <span data-provenance="uploaded">uploaded</span>;
  if (kind === "url") return <span data-provenance="url">downloaded from {String(p["url"])}</span>;
  if (kind === "repository" && p["pretrained"] === false) {
    return (
      <span data-provenance="untrained">
        built from the architecture <code>{String(p["architecture"])}</code> with fresh weights;
        untrained, so training starts it from scratch
      </span>
    );
  }
  if (kind === "repository") {
    return (
      <span data-provenance="repository">
        imported from {String(p["repository"])} <code>{String(p["reference"])}</code>
      </span>
    );
  }
  return <span data-provenance={kind}>{kind}</span>;
}

function inputSpecText(version: ModelVersion): string {
  const spec = version.inputSpec;
  if (!spec) return "—";
  const round = (values: number[]) => values.map((v) => v.toFixed(3)).join(", ");
  return `${spec.sizePx.join(" × ")} px · mean ${round(spec.mean)} · std ${round(spec.std)}`;
}

function VersionsCard({ versions }: { versions: ModelVersion[] }) {
  return (
    <Card title="Versions">
      <table className="table compact" aria-label="Model versions">
        <thead>
          <tr>
            <th>Version</th>
            <th>Parent</th>
            <th>Provenance</th>
            <th>Input</th>
            <th className="numeric">Parameters</th>
            <th className="numeric">Size</th>
            <th>Created</th>
          </tr>
        </thead>
        <tbody>
          {[...versions].reverse().map((version) => (
            <tr key={version.id} data-version={version.number}>
              <td className="strong">v{version.number}</td>
              <td>{versionLabel(versions, version.parentVersionId)}</td>
              <td>
                <Provenance version={version} versions={versions} />
              </td>
              <td className="small">{inputSpecText(version)}</td>
              <td className="numeric">
                {version.parameterCount === null ? "—" : formatCount(version.parameterCount)}
              </td>
              <td className="numeric nowrap">{formatBytes(version.sizeBytes)}</td>
              <td className="nowrap">{formatTime(version.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </Card>
  );
}

function ModelCard({ modelId, version }: { modelId: number; version: number }) {
  const card = useResource(
    () =>
      unwrap(
        api.GET("/api/admin/models/{model_id}/versions/{number}/card", {
          params: { path: { model_id: modelId, number: version } },
        }),
      ),
    [modelId, version],
  );
  return (
    <Card title={`Model card · v${version}`}>
      {card.error && <ErrorNotice message={card.error} onRetry={card.reload} />}
      {!card.data && !card.error && <Loading what="the model card" />}
      {card.data && <pre className="model-card">{card.data.markdown}</pre>}
    </Card>
  );
}

function metric(value: number | null): string {
  return value === null ? "—" : value.toFixed(3);
}

function EvaluationsCard({ evaluations }: { evaluations: EvaluationSummary[] }) {
  return (
    <Card title="Evaluations">
      {evaluations.length === 0 ? (
        <p className="muted">No evaluations yet; training evaluates each version it makes.</p>
      ) : (
        <table className="table compact" aria-label="Evaluations">
          <thead>
            <tr>
              <th>Version</th>
              <th>Dataset</th>
              <th className="numeric">Samples</th>
              <th className="numeric">Accuracy</th>
              <th className="numeric">Macro F1</th>
              <th className="numeric">Log loss</th>
              <th className="numeric">ECE</th>
              <th>When</th>
            </tr>
          </thead>
          <tbody>
            {evaluations.map((e) => (
              <tr key={e.id}>
                <td>v{e.modelVersion}</td>
                <td>
                  {e.datasetId === null ? (
                    "—"
                  ) : (
                    <a href={href({ page: "dataset", datasetId: e.datasetId })}>
                      {e.datasetName ?? `#${e.datasetId}`}
                    </a>
                  )}
                  {e.datasetVersion !== null && ` v${e.datasetVersion}`}
                  {e.split && <span className="muted"> · {e.split}</span>}
                </td>
                <td className="numeric">{e.numSamples ?? "—"}</td>
                <td className="numeric">{metric(e.accuracy)}</td>
                <td className="numeric">{metric(e.macroF1)}</td>
                <td className="numeric">{metric(e.logLoss)}</td>
                <td className="numeric">{metric(e.ece)}</td>
                <td className="nowrap">{formatTime(e.createdAt)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Card>
  );
}

function TryIt({ modelId }: { modelId: number }) {
  const [image, setImage] = useState<File | null>(null);
  const [preview, setPreview] = useState<string | null>(null);
  const [answer, setAnswer] = useState<Predictions | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const choose = (file: File | null) => {
    setImage(file);
    setAnswer(null);
    setError(null);
    if (preview) URL.revokeObjectURL(preview);
    setPreview(file ? URL.createObjectURL(file) : null);
  };

  const classify = async () => {
    if (!image) return;
    setBusy(true);
    setError(null);
    try {
      setAnswer(await predictImage(modelId, image));
    } catch (reason) {
      setError(describeError(reason));
    } finally {
      setBusy(false);
    }
  };

  const scores = answer?.results[0]?.predictions ?? [];
  return (
    <Card title="Try it">
      <div className="try-it">
        <div className="stack">
          <label className="field">
            <span>Image to classify</span>
            <input
              type="file"
              accept="image/*"
              onChange={(event) => choose(event.target.files?.[0] ?? null)}
            />
          </label>
          {preview && <img className="try-preview" src={preview} alt="The chosen image" />}
          <div>
            <button type="button" disabled={!image || busy} onClick={() => void classify()}>
              {busy ? "Classifying…" : "Classify"}
            </button>
          </div>
        </div>
        <div className="stack">
          {error && <ErrorNotice message={error} />}
          {answer && (
            <>
              <p className="muted small">Top classes from v{answer.version}</p>
              <ol className="predictions" aria-label="Predictions">
                {scores.map((score) => (
                  <li key={score.index} data-label={score.label}>
                    <span className="class-name truncate">{score.label}</span>
                    <span className="prediction-bar">
                      <span style={{ width: formatPercent(score.probability) }} />
                    </span>
                    <span className="numeric">{(score.probability * 100).toFixed(1)}%</span>
                  </li>
                ))}
              </ol>
            </>
          )}
        </div>
      </div>
    </Card>
  );
}

function Overview({ model }: { model: Model }) {
  const rows: [string, ReactNode][] = [
    ["Status", <StatusBadge key="s" status={model.status} />],
    ["Latest version", model.version === null ? "—" : `v${model.version}`],
    ["Framework", formatLabel(model)],
    ["Architecture", model.architecture ?? "—"],
    ["Parameters", model.parameterCount === null ? "—" : formatCount(model.parameterCount)],
    ["Classes", model.numClasses === null ? "—" : formatCount(model.numClasses)],
    ["Created", formatTime(model.createdAt)],
  ];
  if (model.importJobId !== null) {
    const jobId = model.importJobId;
    rows.push([
      "Import job",
      <a key="j" href={href({ page: "job", jobId })}>
        #{jobId}
      </a>,
    ]);
  }
  return (
    <Card title="Overview">
      <Facts rows={rows} />
      {model.classNames.length > 0 && (
        <p className="chips model-classes">
          {model.classNames.slice(0, 30).map((name) => (
            <span key={name} className="chip">
              {name}
            </span>
          ))}
          {model.classNames.length > 30 && (
            <span className="chip chip-more">+{model.classNames.length - 30}</span>
          )}
        </p>
      )}
    </Card>
  );
}

function ReadyParts({ model }: { model: Model }) {
  const versions = useResource(
    () =>
      unwrap(
        api.GET("/api/admin/models/{model_id}/versions", {
          params: { path: { model_id: model.id } },
        }),
      ),
    [model.id, model.version],
  );
  const evaluations = useResource(
    () =>
      unwrap(
        api.GET("/api/admin/models/{model_id}/evaluations", {
          params: { path: { model_id: model.id }, query: { pageSize: 50 } },
        }),
      ),
    [model.id, model.version],
  );
  return (
    <>
      {versions.error && <ErrorNotice message={versions.error} onRetry={versions.reload} />}
      {versions.data && <VersionsCard versions={versions.data} />}
      <TryIt modelId={model.id} />
      {evaluations.error && (
        <ErrorNotice message={evaluations.error} onRetry={evaluations.reload} />
      )}
      {evaluations.data && <EvaluationsCard evaluations={evaluations.data.items} />}
      {model.version !== null && <ModelCard modelId={model.id} version={model.version} />}
    </>
  );
}

export function ModelDetail({ modelId }: { modelId: number }) {
  const [training, setTraining] = useState(false);
  const model = useResource(
    () =>
      unwrap(api.GET("/api/admin/models/{model_id}", { params: { path: { model_id: modelId } } })),
    [modelId],
    { refreshMs: 2000, keepRefreshing: (m) => m.status === "importing" },
  );
  const data = model.data;

  return (
    <div className="page">
      <p className="breadcrumb">
        <a href={href({ page: "models" })}>Models</a> /
      </p>
      {model.error && <ErrorNotice message={model.error} onRetry={model.reload} />}
      {!data && !model.error && <Loading what="the model" />}
      {data && (
        <>
          <header className="page-header">
            <div>
              <h1>{data.name}</h1>
              {data.description && <p className="muted">{data.description}</p>}
            </div>
            {data.status === "ready" && (
              <button type="button" onClick={() => setTraining(true)}>
                Train
              </button>
            )}
          </header>
          {data.status === "failed" && data.error && (
            <ErrorNotice message={`The import failed: ${data.error}`} />
          )}
          <Overview model={data} />
          {data.status === "ready" && <ReadyParts model={data} />}
          {training && <TrainDialog modelId={modelId} onClose={() => setTraining(false)} />}
        </>
      )}
    </div>
  );
}
