import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// The build is committed and embedded in the tasker binary, and CI rebuilds
// it from the lockfile and fails on any difference: keep the output a pure
// function of the sources (no source maps with absolute paths, no dates).
export default defineConfig({
  plugins: [react()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    // One bundle of React, React Flow, dagre and ajv is about 600 kB
    // (under 200 kB gzipped), loaded once from the binary itself.
    chunkSizeWarningLimit: 900,
  },
  server: {
    // `npm run dev` proxies the API to a `tasker dev` on its default port.
    proxy: { '/api': 'http://127.0.0.1:7080' },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
