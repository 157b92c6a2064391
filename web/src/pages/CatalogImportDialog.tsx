// Importing a catalog dataset: name, classes and a cap per class, then the import job's live progress.
import { useMemo, useState } from "react";
import type { FormEvent } from "react";

import { createPremadeImporter } from "../api/premade";
import { describeError } from "../api/errors";
import type { PremadeDataset, PremadeImport, StartedImport } from "../api/types";
import { Dialog, ErrorNotice, Field } from "../components/ui";
import { formatCount, plural } from "../format";
import { navigate } from "../router";
import { ImportProgress } from "./ImportProgress";

const MIN_CLASSES = 2;

type Phase = { step: "form"; sending: boolean } | { step: "importing"; started: StartedImport };

function ClassPicker({
  entry,
  selected,
  onChange,
}: {
  entry: PremadeDataset;
  selected: ReadonlySet<string>;
  onChange: (selected: Set<string>) => void;
}) {
  const toggle = (name: string, checked: boolean) => {
    const next = new Set(selected);
    if (checked) next.add(name);
    else next.delete(name);
    onChange(next);
  };
  return (
    <fieldset className="class-picker">
      <legend>Classes</legend>
      <div className="row-between">
        <span className="muted small" aria-live="polite">
          {selected.size} of {entry.classes.length} selected
        </span>
        <span>
          <button
            type="button"
            className="button-link small"
            onClick={() => onChange(new Set(entry.classes.map((item) => item.name)))}
          >
            All
          </button>
          <button type="button" className="button-link small" onClick={() => onChange(new Set())}>
            None
          </button>
        </span>
      </div>
      <div className="class-options">
        {entry.classes.map((item) => (
          <label key={item.name} className="inline class-option">
            <input
              type="checkbox"
              checked={selected.has(item.name)}
              onChange={(event) => toggle(item.name, event.target.checked)}
            />
            <span className="truncate">{item.name}</span>{" "}
            {item.count !== null && (
              <span className="muted small numeric">{formatCount(item.count)}</span>
            )}
          </label>
        ))}
      </div>
    </fieldset>
  );
}

/** The request for the form's values; every class selected means no selection at all. */
function importRequest(
  entry: PremadeDataset,
  form: { name: string; description: string; selected: ReadonlySet<string>; cap: string },
  includeMetadata: boolean,
): PremadeImport {
  const everything = form.selected.size === entry.classes.length;
  const cap = form.cap.trim();
  return {
    sourceDatasetId: entry.id,
    name: form.name.trim(),
    description: form.description.trim(),
    selectedClasses: everything
      ? null
      : entry.classes.map((c) => c.name).filter((n) => form.selected.has(n)),
    maxSamplesPerClass: cap ? Number(cap) : null,
    includeMetadata,
  };
}

/** How many images the chosen classes hold, when the catalog knows every count. */
function selectedImages(entry: PremadeDataset, selected: ReadonlySet<string>): number | null {
  const chosen = entry.classes.filter((item) => selected.has(item.name));
  if (chosen.some((item) => item.count === null)) return null;
  return chosen.reduce((sum, item) => sum + (item.count ?? 0), 0);
}

export function CatalogImportDialog({
  entry,
  onClose,
}: {
  entry: PremadeDataset;
  onClose: () => void;
}) {
  const [name, setName] = useState(entry.name);
  const [description, setDescription] = useState(entry.description);
  const [selected, setSelected] = useState<Set<string>>(
    () => new Set(entry.classes.map((item) => item.name)),
  );
  const [cap, setCap] = useState("");
  const [includeMetadata, setIncludeMetadata] = useState(false);
  const [phase, setPhase] = useState<Phase>({ step: "form", sending: false });
  const [error, setError] = useState<string | null>(null);
  const startImport = useMemo(createPremadeImporter, []);

  const listed = entry.classes.length > 0;
  const tooFew = listed && selected.size < MIN_CLASSES;
  const images = listed ? selectedImages(entry, selected) : null;

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    if (tooFew) return;
    setError(null);
    setPhase({ step: "form", sending: true });
    try {
      const form = { name, description, selected, cap };
      const answer = await startImport(importRequest(entry, form, includeMetadata));
      setPhase({ step: "importing", started: answer });
    } catch (reason) {
      setError(describeError(reason));
      setPhase({ step: "form", sending: false });
    }
  };

  return (
    <Dialog title={`Import ${entry.name}`} onClose={onClose}>
      {phase.step === "form" && (
        <form className="stack" onSubmit={submit} aria-label="Import from the catalog">
          {error && <ErrorNotice message={error} />}
          <Field label="Name">
            {(ids) => (
              <input
                {...ids}
                value={name}
                onChange={(event) => setName(event.target.value)}
                required
                maxLength={200}
              />
            )}
          </Field>
          <Field
            label={
              <>
                Description <span className="muted">(optional)</span>
              </>
            }
          >
            {(ids) => (
              <textarea
                {...ids}
                rows={3}
                value={description}
                onChange={(event) => setDescription(event.target.value)}
              />
            )}
          </Field>
          {listed ? (
            <ClassPicker entry={entry} selected={selected} onChange={setSelected} />
          ) : (
            <p className="muted small">
              The catalog does not list this dataset's classes; every class is imported.
            </p>
          )}
          <Field
            label={
              <>
                Images per class <span className="muted">(optional)</span>
              </>
            }
            hint="At most this many images of each class in each split (train, validation, test), chosen at random. Leave empty to import them all."
          >
            {(ids) => (
              <input
                {...ids}
                type="number"
                min={1}
                step={1}
                inputMode="numeric"
                placeholder="All"
                value={cap}
                onChange={(event) => setCap(event.target.value)}
              />
            )}
          </Field>
          <label className="inline">
            <input
              type="checkbox"
              checked={includeMetadata}
              onChange={(event) => setIncludeMetadata(event.target.checked)}
            />
            Include metadata <span className="hint">(the source's extra fields, per sample)</span>
          </label>
          <p className="muted small" aria-live="polite">
            {tooFew
              ? `Choose at least ${MIN_CLASSES} classes: a classifier needs something to tell apart.`
              : `${images === null ? "" : `The chosen classes hold ${plural(images, "image")} in the source. `}${
                  entry.downloadSize ? `Download size: ${entry.downloadSize}.` : ""
                }`}
          </p>
          <div className="dialog-actions">
            <button type="button" className="button-secondary" onClick={onClose}>
              Cancel
            </button>
            <button type="submit" disabled={tooFew || !name.trim() || phase.sending}>
              {phase.sending ? "Starting…" : "Import"}
            </button>
          </div>
        </form>
      )}
      {phase.step === "importing" && (
        <div className="stack">
          <ImportProgress started={phase.started} />
          <div className="dialog-actions">
            <button type="button" className="button-secondary" onClick={onClose}>
              Done
            </button>
            <button
              type="button"
              onClick={() => {
                onClose();
                navigate({ page: "dataset", datasetId: phase.started.id });
              }}
            >
              Open dataset
            </button>
          </div>
        </div>
      )}
    </Dialog>
  );
}
