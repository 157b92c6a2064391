// The training form's state, which of its fields apply, and the request it sends.
import type { TrainingStart } from "../api/types";

type Settings = Omit<TrainingStart, "modelId" | "datasetId">;

/** How the job trains: the whole network, a head over frozen features, a subset, or k folds. */
export type Mode = "fineTune" | "featureExtraction" | "quickTrial" | "crossValidation";

/** The fields every request carries: the training route's documented body. */
type MainKey =
  | "learningRate"
  | "epochs"
  | "batchSize"
  | "useTransferLearning"
  | "freezeBaseModel"
  | "trainableLayersCount"
  | "enableEarlyStopping"
  | "enableDataAugmentation"
  | "validationSplit"
  | "enableHyperparameterTuning";

/** Fields sent only when they differ from the API's default. */
type ChangeableKey =
  | "searchTrials"
  | "searchParallelTrials"
  | "searchTimeBudgetSeconds"
  | "optimizer"
  | "weightDecay"
  | "schedule"
  | "warmupEpochs"
  | "labelSmoothing"
  | "headLearningRateMultiplier"
  | "classBalance"
  | "layerDecay"
  | "freezeBatchNorm"
  | "augmentation"
  | "focus"
  | "seed"
  | "earlyStoppingMetric"
  | "earlyStoppingPatience"
  | "earlyStoppingMinDelta";

/** Numbers that may stay empty, and are then left out of the request. */
type OptionalKey = "unfreezeEveryEpochs" | "imageSizePx" | "timeBudgetSeconds";

export type TrainingForm = Required<Pick<Settings, MainKey | ChangeableKey>> & {
  [K in OptionalKey]: number | null;
} & { mode: Mode; crossValidationFolds: number };

export type FormKey = keyof TrainingForm;

/** Why a field is disabled, by field; a disabled field that the request may omit is omitted. */
export type Reasons = Partial<Record<FormKey, string>>;

/** Defaults that suit a small material set fine-tuned from an ImageNet backbone. */
const DEFAULTS: Required<Pick<Settings, MainKey>> = {
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
};

/** The API's own defaults for the fields sent only when changed. */
const API_DEFAULTS: Required<Pick<Settings, ChangeableKey>> = {
  searchTrials: 12,
  searchParallelTrials: 1,
  searchTimeBudgetSeconds: 3600,
  optimizer: "adamw",
  weightDecay: 0.01,
  schedule: "cosine",
  warmupEpochs: 1,
  labelSmoothing: 0,
  headLearningRateMultiplier: 1,
  classBalance: "none",
  layerDecay: 1,
  freezeBatchNorm: false,
  augmentation: "standard",
  focus: "none",
  seed: 0,
  earlyStoppingMetric: "valLoss",
  earlyStoppingPatience: 3,
  earlyStoppingMinDelta: 0,
};

const MAIN_KEYS = Object.keys(DEFAULTS) as MainKey[];
const CHANGEABLE_KEYS = Object.keys(API_DEFAULTS) as ChangeableKey[];
const OPTIONAL_KEYS: readonly OptionalKey[] = [
  "unfreezeEveryEpochs",
  "imageSizePx",
  "timeBudgetSeconds",
];

export const INITIAL_FORM: TrainingForm = {
  ...DEFAULTS,
  ...API_DEFAULTS,
  unfreezeEveryEpochs: null,
  imageSizePx: null,
  timeBudgetSeconds: null,
  mode: "fineTune",
  crossValidationFolds: 5,
};

const SEARCH_KEYS = ["searchTrials", "searchParallelTrials", "searchTimeBudgetSeconds"] as const;
export const TRANSFER_KEYS = ["unfreezeEveryEpochs", "layerDecay", "freezeBatchNorm"] as const;
const STOPPING_KEYS = [
  "earlyStoppingMetric",
  "earlyStoppingPatience",
  "earlyStoppingMinDelta",
] as const;

function mark(reasons: Reasons, keys: readonly FormKey[], reason: string): void {
  for (const key of keys) reasons[key] ??= reason;
}

/** What the chosen mode rules out. */
function modeReasons(form: TrainingForm, reasons: Reasons): void {
  if (form.mode === "featureExtraction") {
    reasons.enableHyperparameterTuning = "Feature extraction trains one head, without a search.";
    reasons.useTransferLearning = "Feature extraction embeds with the pretrained weights.";
    mark(
      reasons,
      ["freezeBaseModel", "trainableLayersCount", ...TRANSFER_KEYS],
      "Feature extraction keeps the whole base frozen.",
    );
    mark(reasons, ["augmentation", "focus"], "Feature extraction embeds each image once, whole.");
  }
  if (form.mode === "crossValidation") {
    reasons.enableHyperparameterTuning =
      "Cross-validation and a search each repeat the training; choose one of them.";
  }
}

/** What the other options rule out. */
function optionReasons(form: TrainingForm, reasons: Reasons): void {
  if (!form.enableHyperparameterTuning) mark(reasons, SEARCH_KEYS, "Only a search uses it.");
  if (form.schedule !== "cosine") reasons.warmupEpochs = "Only the cosine schedule warms up.";
  if (!form.freezeBaseModel) {
    reasons.trainableLayersCount ??= "Counted from the head; used when the base is frozen.";
    reasons.unfreezeEveryEpochs ??= "Used when the base is frozen (Options above).";
  }
  if (!form.enableDataAugmentation) {
    reasons.augmentation ??= "Augmentation is off (Options above).";
  }
  if (!form.enableEarlyStopping) {
    mark(reasons, STOPPING_KEYS, "Early stopping is off (Options above).");
  }
}

/** The fields that do not apply to the rest of the form, each with the reason shown beside it. */
export function reasonsOff(form: TrainingForm): Reasons {
  const reasons: Reasons = {};
  modeReasons(form, reasons);
  optionReasons(form, reasons);
  return reasons;
}

/** Why a mode cannot be chosen with the rest of the form, if it cannot. */
export function modeReason(mode: Mode, form: TrainingForm): string | undefined {
  if (mode === "featureExtraction" && !form.useTransferLearning) {
    return "needs the pretrained weights";
  }
  const searchless = mode === "featureExtraction" || mode === "crossValidation";
  if (searchless && form.enableHyperparameterTuning) return "not with a search";
  return undefined;
}

function modeSettings(form: TrainingForm): Partial<Settings> {
  switch (form.mode) {
    case "fineTune":
      return {};
    case "featureExtraction":
      return { featureExtraction: true };
    case "quickTrial":
      return { quickTrial: true };
    case "crossValidation":
      return { crossValidationFolds: form.crossValidationFolds };
  }
}

/**
 * Copies one field into the request unless it holds an emptied number (NaN), which JSON
 * would turn into a null: a disabled input escapes the browser's check for empty ones.
 */
function copy<K extends FormKey & keyof Settings>(
  target: Partial<Settings>,
  form: TrainingForm,
  key: K,
): void {
  const value = form[key];
  if (typeof value === "number" && Number.isNaN(value)) return;
  target[key] = value;
}

/** The changed and the filled-in fields that apply; the API's defaults cover the rest. */
function chosenSettings(form: TrainingForm, reasons: Reasons): Partial<Settings> {
  const chosen: Partial<Settings> = {};
  for (const key of CHANGEABLE_KEYS) {
    if (!reasons[key] && form[key] !== API_DEFAULTS[key]) copy(chosen, form, key);
  }
  for (const key of OPTIONAL_KEYS) {
    if (!reasons[key] && form[key] !== null) copy(chosen, form, key);
  }
  return chosen;
}

/** The request for `POST /api/admin/training/start`: short, and never a null. */
export function trainingRequest(
  form: TrainingForm,
  ids: Pick<TrainingStart, "modelId" | "datasetId">,
): TrainingStart {
  const main: Partial<Settings> = {};
  for (const key of MAIN_KEYS) copy(main, form, key);
  return { ...ids, ...main, ...modeSettings(form), ...chosenSettings(form, reasonsOff(form)) };
}

/** What a part of the form reads and changes. */
export interface FormPart {
  form: TrainingForm;
  reasons: Reasons;
  set: <K extends FormKey>(key: K, value: TrainingForm[K]) => void;
}

/** A control's value, change handler and disabled reason for one field. */
export function bind<K extends FormKey>(part: FormPart, key: K) {
  return {
    value: part.form[key],
    onChange: (value: TrainingForm[K]) => part.set(key, value),
    disabledReason: part.reasons[key],
  };
}

/** The reason every one of `keys` is off for, when they share one. */
export function sharedReason(reasons: Reasons, keys: readonly FormKey[]): string | undefined {
  const [first, ...rest] = keys.map((key) => reasons[key]);
  return rest.every((reason) => reason === first) ? first : undefined;
}
