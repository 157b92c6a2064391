// Names for the shapes the panel reads, derived from the generated schema by route, not by hand.
import type { paths } from "./schema";

type JsonBody<R> = R extends { content: { "application/json": infer T } } ? T : never;

type SuccessOf<Responses> = {
  [S in keyof Responses]: S extends 200 | 201 | 202 ? JsonBody<Responses[S]> : never;
}[keyof Responses];

/** The JSON a route answers with on success. */
export type Ok<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  responses: infer Responses;
}
  ? SuccessOf<Responses>
  : never;

/** The JSON body a route takes. */
export type Body<P extends keyof paths, M extends keyof paths[P]> = paths[P][M] extends {
  requestBody?: { content: { "application/json": infer T } };
}
  ? T
  : never;

type ItemOf<L> = L extends { items: (infer T)[] } ? T : never;

export type User = Ok<"/api/auth/me", "get">["user"];
export type Dataset = Ok<"/api/admin/datasets/{dataset_id}", "get">;
export type DatasetSummary = ItemOf<Ok<"/api/admin/datasets", "get">>;
export type DatasetVersion = Ok<"/api/admin/datasets/{dataset_id}/versions", "get">[number];
export type VersionDiff = Ok<"/api/admin/datasets/{dataset_id}/diff", "get">;
export type ChangeSet = VersionDiff["added"];
export type Sample = ItemOf<Ok<"/api/admin/datasets/{dataset_id}/samples", "get">>;
export type SampleEdit = Body<"/api/admin/datasets/{dataset_id}/versions", "post">;
export type EditOperation = SampleEdit["operations"][number];
/** The edits that act on chosen samples: relabel, remove and move. */
export type SampleOperation = Extract<EditOperation, { sampleIds: string[] }>;
export type UploadAnswer = Ok<"/api/admin/datasets/upload", "post">;
export type PremadeDataset = ItemOf<Ok<"/api/admin/datasets/premade", "get">>;
export type PremadeClass = PremadeDataset["classes"][number];
export type CatalogCategory = PremadeDataset["category"];
export type PremadeImport = Body<"/api/admin/datasets/import/premade", "post">;
export type PremadeImportAnswer = Ok<"/api/admin/datasets/import/premade", "post">;
/** What follows an import: the new dataset and the job that fills it. */
export interface StartedImport {
  id: number;
  jobId: number;
}
export type ModelSummary = ItemOf<Ok<"/api/admin/models", "get">>;
export type Model = Ok<"/api/admin/models/{model_id}", "get">;
export type ModelVersion = Ok<"/api/admin/models/{model_id}/versions", "get">[number];
export type ModelUploadAnswer = Ok<"/api/admin/models/upload", "post">;
export type ModelCard = Ok<"/api/admin/models/{model_id}/versions/{number}/card", "get">;
export type EvaluationSummary = ItemOf<Ok<"/api/admin/models/{model_id}/evaluations", "get">>;
export type Predictions = Ok<"/api/admin/models/{model_id}/predict", "post">;
export type ClassScore = Predictions["results"][number]["predictions"][number];
export type TrainingStart = Body<"/api/admin/training/start", "post">;
export type QualityReport = Ok<"/api/admin/datasets/{dataset_id}/quality", "get">;
export type QualityIssue = ItemOf<Ok<"/api/admin/datasets/{dataset_id}/quality/issues", "get">>;
export type Job = Ok<"/api/admin/jobs/{job_id}", "get">;
export type JobSummary = ItemOf<Ok<"/api/admin/jobs", "get">>;
export type JobEvent = ItemOf<Ok<"/api/admin/jobs/{job_id}/events", "get">>;
export type JobStatus = Job["status"];
export type Split = Sample["split"];

export const SPLITS: readonly Split[] = ["train", "val", "test"];

/** How many samples of one class each split holds. */
export interface ClassCount {
  name: string;
  total: number;
  train: number;
  val: number;
  test: number;
}

/** The dataset's classes with their counts per split, in the dataset's class order. */
export function classCountsOf(dataset: Pick<Dataset, "classes" | "classCounts">): ClassCount[] {
  return dataset.classes.map((name) => {
    const counts = dataset.classCounts[name] ?? {};
    const [train, val, test] = SPLITS.map((split) => counts[split] ?? 0) as [
      number,
      number,
      number,
    ];
    return { name, train, val, test, total: counts["total"] ?? train + val + test };
  });
}

const FINISHED: readonly JobStatus[] = ["succeeded", "failed", "cancelled"];

/** Whether a job has reached a final state. */
export function isFinished(status: JobStatus): boolean {
  return FINISHED.includes(status);
}
