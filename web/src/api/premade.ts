// The premade catalog: its words for people, and starting an import that a retry never repeats.
import { api, unwrap } from "./client";
import type { CatalogCategory, PremadeImport, PremadeImportAnswer } from "./types";

export const CATEGORIES: readonly { value: CatalogCategory; label: string }[] = [
  { value: "materials", label: "Materials" },
  { value: "textures", label: "Textures" },
  { value: "general", label: "General" },
];

const REPOSITORY_LABELS: Record<string, string> = {
  huggingface: "Hugging Face",
  kaggle: "Kaggle",
  tfds: "TensorFlow Datasets",
  imagenet: "ImageNet folder",
  sample: "Built in",
};

/** The repositories a person can filter the catalog by. */
export const REPOSITORIES: readonly { value: string; label: string }[] = [
  "huggingface",
  "kaggle",
  "tfds",
  "sample",
].map((value) => ({ value, label: repositoryLabel(value) }));

/** `Hugging Face` for `huggingface`; an unknown repository keeps its own name. */
export function repositoryLabel(repository: string): string {
  return REPOSITORY_LABELS[repository] ?? repository;
}

/** `Textures` for `textures`. */
export function categoryLabel(category: CatalogCategory): string {
  return CATEGORIES.find((item) => item.value === category)?.label ?? category;
}

/**
 * A random key for the Idempotency-Key header. Built from getRandomValues,
 * which, unlike randomUUID, also works when the panel is served over plain HTTP.
 */
function newIdempotencyKey(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

/**
 * Starts premade imports. Sending the same request again (after a lost answer,
 * say) reuses its key, so the server answers with the first import instead of
 * starting a second; a changed request gets a new key.
 */
export function createPremadeImporter(): (body: PremadeImport) => Promise<PremadeImportAnswer> {
  let last: { request: string; key: string } | null = null;
  return (body) => {
    const request = JSON.stringify(body);
    if (last?.request !== request) last = { request, key: newIdempotencyKey() };
    return unwrap(
      api.POST("/api/admin/datasets/import/premade", {
        body,
        params: { header: { "idempotency-key": last.key } },
      }),
    );
  };
}
