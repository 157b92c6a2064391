// Labelled form controls for numbers, closed choices and flags, built on `Field`.
import { useId } from "react";
import type { ReactNode } from "react";

import { Field } from "./ui";

/** What every control here shares; `disabledReason` disables it and replaces the hint. */
interface ControlProps {
  label: ReactNode;
  hint?: ReactNode;
  disabledReason?: string;
}

interface NumberProps extends ControlProps {
  min: number;
  max?: number;
  step: number | "any";
}

/** A required number; an emptied input reads as NaN, which the browser refuses to submit. */
export function NumberField({
  value,
  onChange,
  ...props
}: NumberProps & { value: number; onChange: (value: number) => void }) {
  return (
    <NumberInput {...props} value={Number.isNaN(value) ? "" : value} required onChange={onChange} />
  );
}

/** A number that may stay empty (null), such as "the model's own" or "none". */
export function OptionalNumberField({
  value,
  onChange,
  placeholder,
  ...props
}: NumberProps & {
  value: number | null;
  onChange: (value: number | null) => void;
  placeholder: string;
}) {
  return (
    <NumberInput
      {...props}
      value={value ?? ""}
      placeholder={placeholder}
      onChange={(next) => onChange(Number.isNaN(next) ? null : next)}
    />
  );
}

function NumberInput({
  label,
  hint,
  disabledReason,
  value,
  onChange,
  required,
  placeholder,
  ...limits
}: NumberProps & {
  value: number | "";
  onChange: (value: number) => void;
  required?: boolean;
  placeholder?: string;
}) {
  return (
    <Field label={label} hint={disabledReason ?? hint}>
      {(ids) => (
        <input
          {...ids}
          {...limits}
          type="number"
          value={value}
          required={required}
          placeholder={placeholder}
          disabled={disabledReason !== undefined}
          onChange={(event) => onChange(event.target.valueAsNumber)}
        />
      )}
    </Field>
  );
}

/** One entry of a select; `disabledReason` greys it out and is shown after its label. */
export interface Choice<T extends string> {
  value: T;
  label: string;
  disabledReason?: string;
}

/** A select over a closed set of string values. */
export function SelectField<T extends string>({
  label,
  hint,
  disabledReason,
  value,
  options,
  onChange,
}: ControlProps & {
  value: T;
  options: readonly Choice<T>[];
  onChange: (value: T) => void;
}) {
  const choose = (picked: string) => {
    const option = options.find((candidate) => candidate.value === picked);
    if (option) onChange(option.value);
  };
  return (
    <Field label={label} hint={disabledReason ?? hint}>
      {(ids) => (
        <select
          {...ids}
          value={value}
          disabled={disabledReason !== undefined}
          onChange={(event) => choose(event.target.value)}
        >
          {options.map((option) => (
            <option key={option.value} value={option.value} disabled={!!option.disabledReason}>
              {option.disabledReason ? `${option.label} (${option.disabledReason})` : option.label}
            </option>
          ))}
        </select>
      )}
    </Field>
  );
}

/** A checkbox with its label beside it; the reason it is disabled, if any, below. */
export function CheckboxField({
  label,
  checked,
  onChange,
  disabledReason,
}: {
  label: ReactNode;
  checked: boolean;
  onChange: (checked: boolean) => void;
  disabledReason?: string;
}) {
  const reasonId = useId();
  const disabled = disabledReason !== undefined;
  return (
    <div className="checkbox-field">
      <label className="inline">
        <input
          type="checkbox"
          checked={checked}
          disabled={disabled}
          aria-describedby={disabled ? reasonId : undefined}
          onChange={(event) => onChange(event.target.checked)}
        />
        {label}
      </label>
      {disabled && (
        <span id={reasonId} className="hint">
          {disabledReason}
        </span>
      )}
    </div>
  );
}
