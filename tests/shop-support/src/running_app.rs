//! An app serving in the background of a test, stoppable on demand.

use service_runtime::app::BoundApp;
use test_harness::wait_until_healthy;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// An app serving in the background of a test. Dropping it stops the app
/// without waiting; [`RunningApp::stop`] waits until it no longer listens.
pub struct RunningApp {
    /// Its base URL, without a trailing slash.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningApp {
    /// Serves `app` and waits until its `/health` answers.
    pub async fn start(app: BoundApp) -> Self {
        let url = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        wait_until_healthy(&url).await;
        Self {
            url,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Shuts the app down and waits until it no longer listens; its pool is
    /// closed with it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("the app's task").expect("the app served");
        }
    }
}
