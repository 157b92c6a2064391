// Starting a training job: a model and a dataset, the hyperparameters, then the job page.
import { useState } from "react";
import type { FormEvent, ReactNode } from "react";

import { api, unwrap } from "../api/client";
import { describeError } from "../api/errors";
import type { TrainingStart } from "../api/types";
import { Dialog, ErrorNotice, Field } from "../components/ui";
import { useResource } from "../resource";
import { navigate } from "../router";

type Settings = Omit<TrainingStart, "modelId" | "datasetId">;

/** Defaults that suit a small material set fine-tuned from an ImageNet backbone. */
const DEFAULTS: Required<
  Pick<
    Settings,
    | "learningRate"
    | "epochs"
    | "batchSize"
    | "useTransferLearning"
    | "freezeBaseModel"
    | "trainableLayersCount"
    | "enableEarlyStopping"
    | "enableDataAugmentation"
    | "validationSplit"
    | "enableHyperparameterTuning"
    | "searchTrials"
    | "searchParallelTrials"
  >
> = {
  learningRate: 0.001,
  epochs: 10,
  batchSize: 32,
  useTransferLearning: true,
  freezeBaseModel: false,
  trainableLayersCount: 1,
  enableEarlyStopping: true,
  enableDataAugmentation: true,
  validationSplit: 0.2,
  enableHyperparameterTuning: false,
  searchTrials: 12,
  searchParallelTrials: 1,
};

type Numbers =
  | "learningRate"
  | "epochs"
  | "batchSize"
  | "trainableLayersCount"
  | "validationSplit"
  | "searchTrials"
  | "searchParallelTrials";
type Flags =
  | "useTransferLearning"
  | "freezeBaseModel"
  | "enableEarlyStopping"
  | "enableDataAugmentation"
  | "enableHyperparameterTuning";

const FLAGS: readonly [Flags, string][] = [
  ["useTransferLearning", "Start from the model's pretrained weights"],
  ["freezeBaseModel", "Freeze the base model"],
  ["enableEarlyStopping", "Stop early when validation stops improving"],
  ["enableDataAugmentation", "Augment training images (flips, crops, colour)"],
  ["enableHyperparameterTuning", "Search the hyperparameters (Optuna, the best trial is kept)"],
];

function ChoiceSelect({
  label,
  value,
  options,
  onChange,
}: {
  label: string;
  value: number | null;
  options: { id: number; name: string }[] | null;
  onChange: (id: number | null) => void;
}) {
  return (
    <Field label={label}>
      {(ids) => (
        <select
          {...ids}
          value={value ?? ""}
          required
          onChange={(event) => onChange(event.target.value ? Number(event.target.value) : null)}
        >
          <option value="">{options === null ? "Loading…" : "Choose…"}</option>
          {(options ?? []).map((option) => (
            <option key={option.id} value={option.id}>
              {option.name}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}

function NumberField({
  label,
  hint,
  value,
  onChange,
  min,
  max,
  step,
}: {
  label: ReactNode;
  hint?: string;
  value: number;
  onChange: (value: number) => void;
  min: number;
  max?: number;
  step: number | "any";
}) {
  return (
    <Field label={label} hint={hint}>
      {(ids) => (
        <input
          {...ids}
          type="number"
          value={Number.isNaN(value) ? "" : value}
          min={min}
          max={max}
          step={step}
          required
          onChange={(event) => onChange(event.target.valueAsNumber)}
        />
      )}
    </Field>
  );
}

/** Opens from a model page (`modelId` fixed) or a dataset page (`datasetId` fixed). */
export function TrainDialog({
  modelId: fixedModel,
  datasetId: fixedDataset,
  onClose,
}: {
  modelId?: number;
  datasetId?: number;
  onClose: () => void;
}) {
  const [modelId, setModelId] = useState<number | null>(fixedModel ?? null);
  const [datasetId, setDatasetId] = useState<number | null>(fixedDataset ?? null);
  const [settings, setSettings] = useState(DEFAULTS);
  const [error, setError] = useState<string | null>(null);
  const [starting, setStarting] = useState(false);
  const models = useResource(
    () => unwrap(api.GET("/api/admin/models", { params: { query: { pageSize: 100 } } })),
    [],
  );
  const datasets = useResource(
    () => unwrap(api.GET("/api/admin/datasets", { params: { query: { pageSize: 100 } } })),
    [],
  );
  const modelOptions = models.data?.items.filter((m) => m.status !== "failed") ?? null;
  const datasetOptions = datasets.data?.items.filter((d) => d.status !== "failed") ?? null;

  const setNumber = (key: Numbers) => (value: number) =>
    setSettings((current) => ({ ...current, [key]: value }));

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (modelId === null || datasetId === null) return;
    setError(null);
    setStarting(true);
    try {
      const body: TrainingStart = { modelId, datasetId, ...settings };
      const started = await unwrap(api.POST("/api/admin/training/start", { body }));
      onClose();
      navigate({ page: "job", jobId: started.jobId });
    } catch (reason) {
      setError(describeError(reason));
      setStarting(false);
    }
  };

  return (
    <Dialog title="Train a model" onClose={onClose}>
      <form className="stack" onSubmit={submit} aria-label="Train a model">
        {error && <ErrorNotice message={error} />}
        {models.error && <ErrorNotice message={models.error} onRetry={models.reload} />}
        {datasets.error && <ErrorNotice message={datasets.error} onRetry={datasets.reload} />}
        {fixedModel === undefined && (
          <ChoiceSelect
            label="Model"
            value={modelId}
            options={modelOptions}
            onChange={setModelId}
          />
        )}
        {fixedDataset === undefined && (
          <ChoiceSelect
            label="Dataset"
            value={datasetId}
            options={datasetOptions}
            onChange={setDatasetId}
          />
        )}
        <div className="form-grid">
          <NumberField
            label="Learning rate"
            value={settings.learningRate}
            onChange={setNumber("learningRate")}
            min={0}
            step="any"
          />
          <NumberField
            label="Epochs"
            value={settings.epochs}
            onChange={setNumber("epochs")}
            min={1}
            step={1}
          />
          <NumberField
            label="Batch size"
            value={settings.batchSize}
            onChange={setNumber("batchSize")}
            min={1}
            step={1}
          />
          <NumberField
            label="Trainable layer groups"
            hint="Counted from the head; used when the base is frozen."
            value={settings.trainableLayersCount}
            onChange={setNumber("trainableLayersCount")}
            min={0}
            step={1}
          />
          <NumberField
            label="Validation split"
            hint="Share of training samples held out when the dataset has no validation split."
            value={settings.validationSplit}
            onChange={setNumber("validationSplit")}
            min={0}
            max={0.9}
            step="any"
          />
        </div>
        <fieldset className="flags">
          <legend>Options</legend>
          {FLAGS.map(([key, label]) => (
            <label key={key} className="inline">
              <input
                type="checkbox"
                checked={settings[key]}
                onChange={(event) =>
                  setSettings((current) => ({ ...current, [key]: event.target.checked }))
                }
              />
              {label}
            </label>
          ))}
        </fieldset>
        {settings.enableHyperparameterTuning && (
          <div className="form-grid">
            <NumberField
              label="Search trials"
              hint="Trials to finish; pruned ones count."
              value={settings.searchTrials}
              onChange={setNumber("searchTrials")}
              min={1}
              max={500}
              step={1}
            />
            <NumberField
              label="Trials at once"
              hint="Each beyond the first runs on another free worker."
              value={settings.searchParallelTrials}
              onChange={setNumber("searchParallelTrials")}
              min={1}
              max={16}
              step={1}
            />
          </div>
        )}
        <div className="dialog-actions">
          <button type="button" className="button-secondary" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" disabled={starting || modelId === null || datasetId === null}>
            {starting ? "Starting…" : "Start training"}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
