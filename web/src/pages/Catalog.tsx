// The premade catalog: curated public datasets to search, filter and import.
import { useEffect, useState } from "react";

import { api, unwrap } from "../api/client";
import { CATEGORIES, REPOSITORIES, categoryLabel, repositoryLabel } from "../api/premade";
import type { PremadeClass, PremadeDataset } from "../api/types";
import { Card, ErrorNotice, Loading, Pager } from "../components/ui";
import { formatCount, plural } from "../format";
import { useResource } from "../resource";
import { href } from "../router";
import { CatalogImportDialog } from "./CatalogImportDialog";

const PAGE_SIZE = 20;
const SEARCH_DELAY_MS = 250;
const CLASSES_SHOWN = 12;

/** `value`, once it has stopped changing for `delayMs`. */
function useSettled<T>(value: T, delayMs: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = window.setTimeout(() => setSettled(value), delayMs);
    return () => window.clearTimeout(timer);
  }, [value, delayMs]);
  return settled;
}

interface Filters {
  search: string;
  category: string;
  repository: string;
}

function FilterBar({
  filters,
  onChange,
}: {
  filters: Filters;
  onChange: (filters: Filters) => void;
}) {
  return (
    <div className="catalog-filters" role="search">
      <label className="catalog-search">
        Search
        <input
          type="search"
          value={filters.search}
          placeholder="Name, class or description, e.g. wood"
          onChange={(event) => onChange({ ...filters, search: event.target.value })}
        />
      </label>
      <label>
        Category
        <select
          value={filters.category}
          onChange={(event) => onChange({ ...filters, category: event.target.value })}
        >
          <option value="">All categories</option>
          {CATEGORIES.map(({ value, label }) => (
            <option key={value} value={value}>
              {label}
            </option>
          ))}
        </select>
      </label>
      <label>
        Repository
        <select
          value={filters.repository}
          onChange={(event) => onChange({ ...filters, repository: event.target.value })}
        >
          <option value="">All repositories</option>
          {REPOSITORIES.map(({ value, label }) => (
            <option key={value} value={value}>
              {label}
            </option>
          ))}
        </select>
      </label>
    </div>
  );
}

function ClassChip({ item }: { item: PremadeClass }) {
  return (
    <span className="chip" data-class={item.name}>
      {item.name}
      {item.count !== null && (
        <>
          {" "}
          <span className="chip-count" title={`${plural(item.count, "image")} in the source`}>
            {formatCount(item.count)}
          </span>
        </>
      )}
    </span>
  );
}

function ClassList({ entry }: { entry: PremadeDataset }) {
  const [expanded, setExpanded] = useState(false);
  if (entry.classes.length === 0) {
    const known =
      entry.numClasses > 0 ? `${formatCount(entry.numClasses)} classes; their` : "Their";
    return <p className="muted small">{known} names are read from the source at import.</p>;
  }
  const shown = expanded ? entry.classes : entry.classes.slice(0, CLASSES_SHOWN);
  const hidden = entry.classes.length - shown.length;
  return (
    <div className="chips" aria-label={`Classes of ${entry.name}`}>
      {shown.map((item) => (
        <ClassChip key={item.name} item={item} />
      ))}
      {hidden > 0 && (
        <button type="button" className="button-link small" onClick={() => setExpanded(true)}>
          +{hidden} more
        </button>
      )}
    </div>
  );
}

function EntryFacts({ entry }: { entry: PremadeDataset }) {
  const facts: [string, string][] = [
    ["Images", entry.numImages === null ? "unknown" : formatCount(entry.numImages)],
    ["Classes", entry.numClasses > 0 ? formatCount(entry.numClasses) : "unknown"],
    ["Size", entry.downloadSize || "unknown"],
    ["License", entry.license || "not stated"],
  ];
  return (
    <dl className="catalog-facts">
      {facts.map(([term, value]) => (
        <div key={term}>
          <dt>{term}</dt>
          <dd>{value}</dd>
        </div>
      ))}
    </dl>
  );
}

function CatalogEntry({
  entry,
  onImport,
}: {
  entry: PremadeDataset;
  onImport: (entry: PremadeDataset) => void;
}) {
  const importable = entry.sources.length > 0;
  return (
    <li className="card catalog-entry" data-entry-id={entry.id} aria-label={entry.name}>
      <div className="catalog-entry-head">
        <div className="catalog-entry-title">
          <h2>{entry.name}</h2>
          <span className="badge badge-neutral">{categoryLabel(entry.category)}</span>
          {entry.repositories.map((repository) => (
            <span key={repository} className="repository" data-repository={repository}>
              {repositoryLabel(repository)}
            </span>
          ))}
        </div>
        <button type="button" disabled={!importable} onClick={() => onImport(entry)}>
          Import
        </button>
      </div>
      <p className="catalog-description">{entry.description}</p>
      <EntryFacts entry={entry} />
      <ClassList entry={entry} />
      {!importable && (
        <p className="catalog-manual small">
          No supported repository carries this dataset.{" "}
          {entry.homepage ? (
            <>
              Download it from <a href={entry.homepage}>its homepage</a>, then upload it as a ZIP.
            </>
          ) : (
            "Download it yourself, then upload it as a ZIP."
          )}
        </p>
      )}
      {importable && entry.homepage && (
        <p className="small">
          <a href={entry.homepage} target="_blank" rel="noreferrer">
            Homepage
          </a>
        </p>
      )}
    </li>
  );
}

export function Catalog() {
  const [filters, setFilters] = useState<Filters>({ search: "", category: "", repository: "" });
  const [page, setPage] = useState(1);
  const [importing, setImporting] = useState<PremadeDataset | null>(null);
  const search = useSettled(filters.search.trim(), SEARCH_DELAY_MS);
  const { category, repository } = filters;
  const catalog = useResource(
    () =>
      unwrap(
        api.GET("/api/admin/datasets/premade", {
          params: {
            query: {
              page,
              pageSize: PAGE_SIZE,
              ...(search && { search }),
              ...(category && { category }),
              ...(repository && { repository }),
            },
          },
        }),
      ),
    [page, search, category, repository],
  );
  const changeFilters = (next: Filters) => {
    setFilters(next);
    setPage(1);
  };
  const list = catalog.data;
  const filtered = Boolean(search || category || repository);
  const updating = catalog.loading || search !== filters.search.trim();

  return (
    <div className="page">
      <p className="breadcrumb">
        <a href={href({ page: "datasets" })}>Datasets</a> /
      </p>
      <header className="page-header">
        <div>
          <h1>Dataset catalog</h1>
          <p className="muted">
            Curated public datasets. Import one whole, or only the classes you need.
          </p>
        </div>
      </header>
      <FilterBar filters={filters} onChange={changeFilters} />
      {catalog.error && <ErrorNotice message={catalog.error} onRetry={catalog.reload} />}
      {!list && !catalog.error && <Loading what="the catalog" />}
      {list && (
        <p className="muted" aria-live="polite" data-testid="catalog-count">
          {plural(list.total, "dataset")}
          {filtered ? " match" : " in the catalog"}
          {updating ? " (updating…)" : ""}
        </p>
      )}
      {list && list.items.length === 0 && (
        <Card>
          <div className="empty">
            <p className="strong">Nothing matches</p>
            <p className="muted">Try fewer words, or another category or repository.</p>
          </div>
        </Card>
      )}
      {list && list.items.length > 0 && (
        <>
          <ul className="catalog-list" aria-label="Catalog">
            {list.items.map((entry) => (
              <CatalogEntry key={entry.id} entry={entry} onImport={setImporting} />
            ))}
          </ul>
          <Pager page={page} pageSize={PAGE_SIZE} total={list.total} onPage={setPage} />
        </>
      )}
      {importing && (
        <CatalogImportDialog
          key={importing.id}
          entry={importing}
          onClose={() => setImporting(null)}
        />
      )}
    </div>
  );
}
