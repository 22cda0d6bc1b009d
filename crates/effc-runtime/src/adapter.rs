//! Choosing the adapter: `WGPU_ADAPTER_NAME` (a substring of the adapter's name)
//! when set, else wgpu's default choice among the backends of `WGPU_BACKEND`, or
//! without it the native APIs (Vulkan, Metal, DX12) first and OpenGL only when none
//! of them has an adapter. An adapter without compute shaders is refused. Everything
//! about which adapter runs a model is decided here; [`crate::Gpu`] opens it.

use crate::GpuError;

/// The adapter in use, for messages and reports.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl AdapterSummary {
    pub fn of(info: &wgpu::AdapterInfo) -> AdapterSummary {
        AdapterSummary {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: [info.driver.as_str(), info.driver_info.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" "),
        }
    }
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {}", self.name, self.backend, self.device_type)?;
        if !self.driver.is_empty() {
            write!(f, ", {}", self.driver)?;
        }
        write!(f, ")")
    }
}

/// The adapter effc runs on, with its summary.
pub(crate) async fn choose() -> Result<(wgpu::Adapter, AdapterSummary), GpuError> {
    let from_env = wgpu::InstanceDescriptor::new_without_display_handle_from_env;
    if std::env::var_os("WGPU_BACKEND").is_some() {
        return choose_among(from_env()).await;
    }
    let mut primary = from_env();
    primary.backends = wgpu::Backends::PRIMARY;
    match choose_among(primary).await {
        Err(GpuError::NoAdapter(_)) => {
            let mut secondary = from_env();
            secondary.backends = wgpu::Backends::SECONDARY;
            choose_among(secondary).await
        }
        r => r,
    }
}

/// The adapter named by `WGPU_ADAPTER_NAME`, else wgpu's choice, among the
/// backends of `desc`.
async fn choose_among(
    desc: wgpu::InstanceDescriptor,
) -> Result<(wgpu::Adapter, AdapterSummary), GpuError> {
    let backends = desc.backends;
    let instance = wgpu::Instance::new(desc);
    let adapter = match std::env::var("WGPU_ADAPTER_NAME") {
        Ok(want) => {
            let want = want.to_lowercase();
            let adapters = instance.enumerate_adapters(backends).await;
            let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
            adapters
                .into_iter()
                .find(|a| a.get_info().name.to_lowercase().contains(&want))
                .ok_or_else(|| {
                    GpuError::NoAdapter(format!(
                        " named like WGPU_ADAPTER_NAME=`{want}` (adapters: {})",
                        names.join(", ")
                    ))
                })?
        }
        Err(_) => instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::from_env()
                    .unwrap_or(wgpu::PowerPreference::HighPerformance),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(format!(" ({e}; backends {backends:?})")))?,
    };
    let summary = AdapterSummary::of(&adapter.get_info());
    if !adapter
        .get_downlevel_capabilities()
        .flags
        .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
    {
        return Err(GpuError::NoCompute(summary.to_string()));
    }
    Ok((adapter, summary))
}
