// The panel's frame: sign-in gate, side navigation and the page for the current route.
import { Loading } from "./components/ui";
import { Catalog } from "./pages/Catalog";
import { DatasetDetail } from "./pages/DatasetDetail";
import { Datasets } from "./pages/Datasets";
import { JobDetail } from "./pages/JobDetail";
import { Jobs } from "./pages/Jobs";
import { ModelDetail } from "./pages/ModelDetail";
import { Models } from "./pages/Models";
import { SignIn } from "./pages/SignIn";
import { href, useRoute } from "./router";
import type { Route } from "./router";
import { useSession } from "./session/session";

function Page({ route }: { route: Route }) {
  switch (route.page) {
    case "datasets":
      return <Datasets />;
    case "catalog":
      return <Catalog />;
    case "dataset":
      return <DatasetDetail key={route.datasetId} datasetId={route.datasetId} />;
    case "models":
      return <Models />;
    case "model":
      return <ModelDetail key={route.modelId} modelId={route.modelId} />;
    case "jobs":
      return <Jobs />;
    case "job":
      return <JobDetail key={route.jobId} jobId={route.jobId} />;
    case "not-found":
      return (
        <div className="page">
          <h1>Page not found</h1>
          <p>
            Nothing lives at <code>{route.path}</code>.{" "}
            <a href={href({ page: "datasets" })}>Go to datasets</a>.
          </p>
        </div>
      );
  }
}

function NavLink({ to, label, active }: { to: Route; label: string; active: boolean }) {
  return (
    <a
      href={href(to)}
      className={active ? "nav-link active" : "nav-link"}
      aria-current={active ? "page" : undefined}
    >
      {label}
    </a>
  );
}

export function App() {
  const { user, checking, signOut } = useSession();
  const route = useRoute();

  if (checking) return <Loading what="Kai" />;
  if (!user) return <SignIn />;

  const inDatasets = ["datasets", "catalog", "dataset"].includes(route.page);
  const inModels = route.page === "models" || route.page === "model";
  const inJobs = route.page === "jobs" || route.page === "job";
  return (
    <div className="shell">
      <aside className="sidebar">
        <a className="brand" href={href({ page: "datasets" })}>
          <span className="brand-mark" aria-hidden="true" />
          Kai
        </a>
        <nav className="nav" aria-label="Main">
          <NavLink to={{ page: "datasets" }} label="Datasets" active={inDatasets} />
          <NavLink to={{ page: "models" }} label="Models" active={inModels} />
          <NavLink to={{ page: "jobs" }} label="Jobs" active={inJobs} />
        </nav>
        <div className="sidebar-footer">
          <div className="user">
            <span className="user-name">{user.username}</span>
            <span className="muted">{user.role}</span>
          </div>
          <button type="button" className="button-secondary" onClick={() => void signOut()}>
            Sign out
          </button>
        </div>
      </aside>
      <main className="content">
        <Page route={route} />
      </main>
    </div>
  );
}
