// One dataset: its metadata, classes per split, versions with diffs, and the sample gallery.
import { useState } from "react";
import type { ReactNode } from "react";

import { api, unwrap } from "../api/client";
import type { Dataset } from "../api/types";
import { classCountsOf } from "../api/types";
import { ClassChart } from "../components/ClassChart";
import { Card, ErrorNotice, Loading, StatusBadge } from "../components/ui";
import { formatCount, formatTime } from "../format";
import { useResource } from "../resource";
import { href } from "../router";
import { QualityCard } from "./QualityCard";
import { SampleGallery } from "./SampleGallery";
import { TrainDialog } from "./TrainDialog";
import { VersionsPanel } from "./VersionsPanel";

function Metadata({ dataset }: { dataset: Dataset }) {
  const rows: [string, ReactNode][] = [
    ["Status", <StatusBadge key="s" status={dataset.status} />],
    ["Samples", formatCount(dataset.sampleCount)],
    ["Classes", formatCount(dataset.classes.length)],
    ["Latest version", dataset.version === null ? "—" : `v${dataset.version}`],
    ["Created", formatTime(dataset.createdAt)],
    ["Updated", formatTime(dataset.updatedAt)],
  ];
  if (dataset.importJobId !== null) {
    rows.push([
      "Import job",
      <a key="j" href={href({ page: "job", jobId: dataset.importJobId })}>
        #{dataset.importJobId}
      </a>,
    ]);
  }
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

export function DatasetDetail({ datasetId }: { datasetId: number }) {
  const [training, setTraining] = useState(false);
  const dataset = useResource(
    () =>
      unwrap(
        api.GET("/api/admin/datasets/{dataset_id}", {
          params: { path: { dataset_id: datasetId } },
        }),
      ),
    [datasetId],
    { refreshMs: 2000, keepRefreshing: (d) => d.status === "importing" },
  );
  const data = dataset.data;

  return (
    <div className="page">
      <p className="breadcrumb">
        <a href={href({ page: "datasets" })}>Datasets</a> /
      </p>
      {dataset.error && <ErrorNotice message={dataset.error} onRetry={dataset.reload} />}
      {!data && !dataset.error && <Loading what="the dataset" />}
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
          <div className="grid-two">
            <Card title="Overview">
              <Metadata dataset={data} />
            </Card>
            <Card title="Classes">
              <ClassChart classes={classCountsOf(data)} />
            </Card>
          </div>
          {data.status === "ready" && (
            <>
              <QualityCard datasetId={datasetId} version={data.version} />
              <VersionsPanel datasetId={datasetId} latest={data.version} />
              <SampleGallery
                datasetId={datasetId}
                classes={data.classes}
                version={data.version}
                onVersionCreated={dataset.reload}
              />
            </>
          )}
          {training && <TrainDialog datasetId={datasetId} onClose={() => setTraining(false)} />}
        </>
      )}
    </div>
  );
}
