// The training form's advanced options, folded away: optimisation, transfer, data and stopping.
import { useState } from "react";
import type { ReactNode } from "react";

import { CheckboxField, NumberField, OptionalNumberField, SelectField } from "../components/inputs";
import type { Choice } from "../components/inputs";
import { TRANSFER_KEYS, bind, sharedReason } from "./trainingForm";
import type { FormKey, FormPart, TrainingForm } from "./trainingForm";

const OPTIMIZERS: readonly Choice<TrainingForm["optimizer"]>[] = [
  { value: "adamw", label: "AdamW" },
  { value: "sgd", label: "SGD (Nesterov)" },
];

const SCHEDULES: readonly Choice<TrainingForm["schedule"]>[] = [
  { value: "cosine", label: "Cosine, after a warm-up" },
  { value: "step", label: "Step decay" },
  { value: "plateau", label: "Halve on a plateau" },
  { value: "none", label: "Constant" },
];

const CLASS_BALANCES: readonly Choice<TrainingForm["classBalance"]>[] = [
  { value: "none", label: "None" },
  { value: "loss", label: "Weight the loss" },
  { value: "sampling", label: "Balance the sampling" },
];

const AUGMENTATIONS: readonly Choice<TrainingForm["augmentation"]>[] = [
  { value: "off", label: "Off" },
  { value: "light", label: "Light" },
  { value: "standard", label: "Standard" },
  { value: "strong", label: "Strong" },
];

const FOCUSES: readonly Choice<TrainingForm["focus"]>[] = [
  { value: "none", label: "None" },
  { value: "texture", label: "Texture" },
  { value: "colour", label: "Colour" },
  { value: "pattern", label: "Pattern" },
];

const METRICS: readonly Choice<TrainingForm["earlyStoppingMetric"]>[] = [
  { value: "valLoss", label: "Validation loss" },
  { value: "valAccuracy", label: "Validation accuracy" },
];

/**
 * A titled group of fields. When every field in `keys` is off for the same reason,
 * the group says it once and is disabled whole; its fields then show their usual hints.
 */
function OptionGroup({
  legend,
  part,
  keys = [],
  children,
}: {
  legend: string;
  part: FormPart;
  keys?: readonly FormKey[];
  children: (part: FormPart) => ReactNode;
}) {
  const reason = sharedReason(part.reasons, keys);
  const inner = reason === undefined ? part : { ...part, reasons: {} };
  return (
    <fieldset className="option-group" disabled={reason !== undefined}>
      <legend>{legend}</legend>
      {reason && <p className="hint">{reason}</p>}
      {children(inner)}
    </fieldset>
  );
}

function Optimisation({ part }: { part: FormPart }) {
  return (
    <div className="form-grid">
      <SelectField label="Optimizer" options={OPTIMIZERS} {...bind(part, "optimizer")} />
      <NumberField
        label="Weight decay"
        hint="Decoupled with AdamW, an L2 penalty with SGD."
        {...bind(part, "weightDecay")}
        min={0}
        max={1}
        step="any"
      />
      <SelectField
        label="Schedule"
        hint="Plateau halves the rate after two epochs without progress."
        options={SCHEDULES}
        {...bind(part, "schedule")}
      />
      <NumberField
        label="Warm-up epochs"
        hint="The rate rises linearly, then decays."
        {...bind(part, "warmupEpochs")}
        min={0}
        max={100}
        step={1}
      />
      <NumberField
        label="Label smoothing"
        hint="Share of each target spread over the other classes."
        {...bind(part, "labelSmoothing")}
        min={0}
        max={0.99}
        step="any"
      />
      <NumberField
        label="Head learning-rate multiplier"
        hint="The new head's rate over the body's."
        {...bind(part, "headLearningRateMultiplier")}
        min={0.01}
        max={100}
        step="any"
      />
      <SelectField
        label="Class balance"
        hint="Inverse-frequency loss weights, or every class drawn equally often."
        options={CLASS_BALANCES}
        {...bind(part, "classBalance")}
      />
    </div>
  );
}

function TransferLearning({ part }: { part: FormPart }) {
  return (
    <>
      <div className="form-grid">
        <OptionalNumberField
          label="Unfreeze a group every"
          hint="Epochs; one more layer group trains each time. Empty: never."
          placeholder="Off"
          {...bind(part, "unfreezeEveryEpochs")}
          min={1}
          max={1000}
          step={1}
        />
        <NumberField
          label="Layer decay"
          hint="Each group's rate as a share of the next one's toward the head; 1 keeps one rate."
          {...bind(part, "layerDecay")}
          min={0.01}
          max={1}
          step="any"
        />
      </div>
      <CheckboxField
        label="Freeze batch-norm statistics"
        checked={part.form.freezeBatchNorm}
        onChange={(checked) => part.set("freezeBatchNorm", checked)}
        disabledReason={part.reasons.freezeBatchNorm}
      />
    </>
  );
}

function Data({ part }: { part: FormPart }) {
  return (
    <div className="form-grid">
      <SelectField
        label="Augmentation"
        hint="Crops, flips and colour; stronger presets crop harder."
        options={AUGMENTATIONS}
        {...bind(part, "augmentation")}
      />
      <SelectField
        label="Focus"
        hint="For ensemble members: small crops, exact colours, or mostly grey."
        options={FOCUSES}
        {...bind(part, "focus")}
      />
      <OptionalNumberField
        label="Image size (px)"
        hint="Height and width of the input."
        placeholder="The model's own"
        {...bind(part, "imageSizePx")}
        min={16}
        max={1024}
        step={1}
      />
      <NumberField
        label="Seed"
        hint="Seeds the split, the shuffling and the new head."
        {...bind(part, "seed")}
        min={0}
        step={1}
      />
    </div>
  );
}

function Stopping({ part }: { part: FormPart }) {
  return (
    <div className="form-grid">
      <SelectField
        label="Early-stopping metric"
        options={METRICS}
        {...bind(part, "earlyStoppingMetric")}
      />
      <NumberField
        label="Patience (epochs)"
        hint="Epochs without improvement before it stops."
        {...bind(part, "earlyStoppingPatience")}
        min={1}
        max={100}
        step={1}
      />
      <NumberField
        label="Minimum improvement"
        hint="A smaller change of the metric does not count."
        {...bind(part, "earlyStoppingMinDelta")}
        min={0}
        step="any"
      />
      <OptionalNumberField
        label="Time budget (s)"
        hint="Stops after the epoch that passes it."
        placeholder="None"
        {...bind(part, "timeBudgetSeconds")}
        min={1}
        step="any"
      />
      {part.form.enableHyperparameterTuning && (
        <NumberField
          label="Search time budget (s)"
          hint="No trial starts after it."
          {...bind(part, "searchTimeBudgetSeconds")}
          min={1}
          step="any"
        />
      )}
    </div>
  );
}

/** Every training option beyond the main form, collapsed (and out of the page) until opened. */
export function AdvancedOptions({ part }: { part: FormPart }) {
  const [open, setOpen] = useState(false);
  return (
    <details
      className="advanced"
      open={open}
      onToggle={(event) => setOpen(event.currentTarget.open)}
    >
      <summary>Advanced</summary>
      {open && (
        <div className="stack">
          <OptionGroup legend="Optimisation" part={part}>
            {(inner) => <Optimisation part={inner} />}
          </OptionGroup>
          <OptionGroup legend="Transfer learning" part={part} keys={TRANSFER_KEYS}>
            {(inner) => <TransferLearning part={inner} />}
          </OptionGroup>
          <OptionGroup legend="Data" part={part}>
            {(inner) => <Data part={inner} />}
          </OptionGroup>
          <OptionGroup legend="Stopping" part={part}>
            {(inner) => <Stopping part={inner} />}
          </OptionGroup>
        </div>
      )}
    </details>
  );
}
