// Builds the admin panel into the Python package, where `kai serve` serves it at `/`.
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

const apiTarget = process.env.KAI_API_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "../src/kai/web/dist",
    emptyOutDir: true,
    sourcemap: false,
    chunkSizeWarningLimit: 400,
  },
  server: {
    proxy: {
      "/api": apiTarget,
      "/ws": { target: apiTarget.replace(/^http/, "ws"), ws: true },
    },
  },
});
