// Starting a training job: a model and a dataset, the mode and hyperparameters, then the job page.
import { useState } from "react";
import type { FormEvent } from "react";

import { api, unwrap } from "../api/client";
import { describeError } from "../api/errors";
import type { TrainingStart } from "../api/types";
import { CheckboxField, NumberField, SelectField } from "../components/inputs";
import type { Choice } from "../components/inputs";
import { Dialog, ErrorNotice, Field } from "../components/ui";
import { useResource } from "../resource";
import { navigate } from "../router";
import { AdvancedOptions } from "./TrainAdvanced";
import { INITIAL_FORM, bind, modeReason, reasonsOff, trainingRequest } from "./trainingForm";
import type { FormKey, FormPart, Mode, TrainingForm } from "./trainingForm";

const MODES: readonly Choice<Mode>[] = [
  { value: "fineTune", label: "Fine-tune" },
  { value: "featureExtraction", label: "Feature extraction (a head over frozen features, fast)" },
  { value: "quickTrial", label: "Quick trial (a small subset, two epochs at most)" },
  { value: "crossValidation", label: "Cross-validation" },
];

const MODE_HINTS: Record<Mode, string> = {
  fineTune: "Trains the network, or its last layer groups when the base is frozen.",
  featureExtraction:
    "The frozen base embeds every image once (cached); only a new head trains on the features.",
  quickTrial: "Eight training images per class for at most two epochs: a check before a long run.",
  crossValidation: "Each fold validates once; the result gives the metrics' mean and spread.",
};

type Flag =
  | "useTransferLearning"
  | "freezeBaseModel"
  | "enableEarlyStopping"
  | "enableDataAugmentation"
  | "enableHyperparameterTuning";

const FLAGS: readonly [Flag, string][] = [
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

function ModeFields({ part }: { part: FormPart }) {
  const options = MODES.map((mode) => ({
    ...mode,
    disabledReason: modeReason(mode.value, part.form),
  }));
  return (
    <div className="form-grid">
      <div className="form-grid-wide">
        <SelectField
          label="Mode"
          hint={MODE_HINTS[part.form.mode]}
          options={options}
          {...bind(part, "mode")}
        />
      </div>
      {part.form.mode === "crossValidation" && (
        <NumberField
          label="Folds"
          {...bind(part, "crossValidationFolds")}
          min={2}
          max={20}
          step={1}
        />
      )}
    </div>
  );
}

function MainFields({ part }: { part: FormPart }) {
  return (
    <div className="form-grid">
      <NumberField
        label="Learning rate"
        {...bind(part, "learningRate")}
        min={1e-7}
        max={10}
        step="any"
      />
      <NumberField label="Epochs" {...bind(part, "epochs")} min={1} max={1000} step={1} />
      <NumberField label="Batch size" {...bind(part, "batchSize")} min={1} max={4096} step={1} />
      <NumberField
        label="Trainable layer groups"
        hint="Counted from the head; used when the base is frozen."
        {...bind(part, "trainableLayersCount")}
        min={1}
        max={1000}
        step={1}
      />
      <NumberField
        label="Validation split"
        hint="Share of training samples held out when the dataset has no validation split."
        {...bind(part, "validationSplit")}
        min={0.01}
        max={0.9}
        step="any"
      />
    </div>
  );
}

function OptionFlags({ part }: { part: FormPart }) {
  return (
    <fieldset className="flags">
      <legend>Options</legend>
      {FLAGS.map(([key, label]) => (
        <CheckboxField
          key={key}
          label={label}
          checked={part.form[key]}
          onChange={(checked) => part.set(key, checked)}
          disabledReason={part.reasons[key]}
        />
      ))}
    </fieldset>
  );
}

function SearchFields({ part }: { part: FormPart }) {
  return (
    <div className="form-grid">
      <NumberField
        label="Search trials"
        hint="Trials to finish; pruned ones count."
        {...bind(part, "searchTrials")}
        min={1}
        max={500}
        step={1}
      />
      <NumberField
        label="Trials at once"
        hint="Each beyond the first runs on another free worker."
        {...bind(part, "searchParallelTrials")}
        min={1}
        max={16}
        step={1}
      />
    </div>
  );
}

/** The model and dataset a job trains; null until chosen. */
interface Target {
  modelId: number | null;
  datasetId: number | null;
}

/** Selects for the model and the dataset, except one fixed by the page the dialog opened from. */
function TargetFields({
  fixed,
  target,
  onChange,
}: {
  fixed: Partial<Record<keyof Target, number>>;
  target: Target;
  onChange: (change: Partial<Target>) => void;
}) {
  const query = { params: { query: { pageSize: 100 } } };
  const models = useResource(() => unwrap(api.GET("/api/admin/models", query)), []);
  const datasets = useResource(() => unwrap(api.GET("/api/admin/datasets", query)), []);
  const modelOptions = models.data?.items.filter((m) => m.status !== "failed") ?? null;
  const datasetOptions = datasets.data?.items.filter((d) => d.status !== "failed") ?? null;
  return (
    <>
      {models.error && <ErrorNotice message={models.error} onRetry={models.reload} />}
      {datasets.error && <ErrorNotice message={datasets.error} onRetry={datasets.reload} />}
      {fixed.modelId === undefined && (
        <ChoiceSelect
          label="Model"
          value={target.modelId}
          options={modelOptions}
          onChange={(modelId) => onChange({ modelId })}
        />
      )}
      {fixed.datasetId === undefined && (
        <ChoiceSelect
          label="Dataset"
          value={target.datasetId}
          options={datasetOptions}
          onChange={(datasetId) => onChange({ datasetId })}
        />
      )}
    </>
  );
}

/** Starts the job and opens its page; keeps the dialog open with the reason when refused. */
function useTrainingStart(onClose: () => void) {
  const [error, setError] = useState<string | null>(null);
  const [starting, setStarting] = useState(false);
  const start = async (body: TrainingStart) => {
    setError(null);
    setStarting(true);
    try {
      const started = await unwrap(api.POST("/api/admin/training/start", { body }));
      onClose();
      navigate({ page: "job", jobId: started.jobId });
    } catch (reason) {
      setError(describeError(reason));
      setStarting(false);
    }
  };
  return { error, starting, start };
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
  const fixed = { modelId: fixedModel, datasetId: fixedDataset };
  const [target, setTarget] = useState<Target>({
    modelId: fixedModel ?? null,
    datasetId: fixedDataset ?? null,
  });
  const [form, setForm] = useState<TrainingForm>(INITIAL_FORM);
  const { error, starting, start } = useTrainingStart(onClose);
  const set = <K extends FormKey>(key: K, value: TrainingForm[K]) =>
    setForm((current) => ({ ...current, [key]: value }));
  const part: FormPart = { form, reasons: reasonsOff(form), set };
  const { modelId, datasetId } = target;

  const submit = (event: FormEvent) => {
    event.preventDefault();
    if (modelId === null || datasetId === null) return;
    void start(trainingRequest(form, { modelId, datasetId }));
  };

  return (
    <Dialog title="Train a model" onClose={onClose}>
      <form className="stack" onSubmit={submit} aria-label="Train a model">
        {error && <ErrorNotice message={error} />}
        <TargetFields
          fixed={fixed}
          target={target}
          onChange={(change) => setTarget((current) => ({ ...current, ...change }))}
        />
        <ModeFields part={part} />
        <MainFields part={part} />
        <OptionFlags part={part} />
        {form.enableHyperparameterTuning && <SearchFields part={part} />}
        <AdvancedOptions part={part} />
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
