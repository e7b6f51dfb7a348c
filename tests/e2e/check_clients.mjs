// CTest fixture: fails, with what to run, when the npm clients the e2e tests drive are missing.
import { loadClients } from './harness.mjs';

try {
  await loadClients();
} catch (err) {
  console.error(`e2e: ${err.message}`);
  process.exit(1);
}
