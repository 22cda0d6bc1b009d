//! The protocol over gRPC (tonic), from `proto/inference.proto` (compiled by
//! protox in build.rs): the same checks, batching and outputs as HTTP; tensors
//! as typed contents or `raw_input_contents`, outputs always as
//! `raw_output_contents` (as Triton answers).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;
use tonic::{Code, Request, Response, Status};

use crate::protocol::{self, Data, InferRequest, InputTensor, Requested};
use crate::{ApiError, Error, Kind, LogLine, State};

/// The code generated from `proto/inference.proto`.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("inference");
}

use pb::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use pb::infer_parameter::ParameterChoice;

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        let code = match e.kind {
            Kind::Invalid => Code::InvalidArgument,
            Kind::NotFound => Code::NotFound,
            Kind::TooLarge | Kind::QueueFull | Kind::Busy => Code::ResourceExhausted,
            Kind::BodyTimeout => Code::DeadlineExceeded,
            Kind::Unavailable => Code::Unavailable,
            Kind::Internal => Code::Internal,
        };
        Status::new(code, e.message)
    }
}

/// The service, over the server's state.
pub struct Service {
    state: Arc<State>,
}

fn tensor_metadata(
    name: &str,
    shape: impl IntoIterator<Item = i64>,
) -> pb::model_metadata_response::TensorMetadata {
    pb::model_metadata_response::TensorMetadata {
        name: name.to_string(),
        datatype: "FP32".into(),
        shape: shape.into_iter().collect(),
    }
}

fn classification(
    name: &str,
    p: &HashMap<String, pb::InferParameter>,
) -> Result<Option<usize>, ApiError> {
    let Some(v) = p.get("classification") else {
        return Ok(None);
    };
    let k = match &v.parameter_choice {
        Some(ParameterChoice::Int64Param(k)) => Some(*k),
        Some(ParameterChoice::Uint64Param(k)) => i64::try_from(*k).ok(),
        _ => None,
    };
    match k {
        Some(k) if k >= 1 => Ok(Some(k as usize)),
        _ => Err(ApiError::invalid(format!(
            "output `{name}`: classification must be a count of classes ≥ 1"
        ))),
    }
}

/// A gRPC inference request in the protocol's terms.
fn request(r: pb::ModelInferRequest) -> Result<InferRequest, ApiError> {
    let raw = r.raw_input_contents;
    if !raw.is_empty() && raw.len() != r.inputs.len() {
        return Err(ApiError::invalid(format!(
            "raw_input_contents has {} entries for {} inputs",
            raw.len(),
            r.inputs.len()
        )));
    }
    let mut raw = raw.into_iter();
    let mut inputs = vec![];
    for i in r.inputs {
        let data = match (raw.next(), i.contents) {
            (Some(_), Some(_)) => {
                return Err(ApiError::invalid(format!(
                    "input `{}` has both contents and raw_input_contents",
                    i.name
                )))
            }
            (Some(bytes), None) => {
                if i.datatype == "BYTES" {
                    Data::Elements(
                        protocol::split_bytes(&bytes)
                            .map_err(|e| ApiError::invalid(format!("input `{}`: {e}", i.name)))?,
                    )
                } else {
                    Data::Raw(bytes)
                }
            }
            (None, Some(c)) => {
                if !c.bytes_contents.is_empty() {
                    Data::Elements(c.bytes_contents)
                } else if !c.fp64_contents.is_empty() {
                    Data::Numbers(c.fp64_contents)
                } else {
                    Data::Numbers(c.fp32_contents.into_iter().map(f64::from).collect())
                }
            }
            (None, None) => {
                return Err(ApiError::invalid(format!(
                    "input `{}` has no contents",
                    i.name
                )))
            }
        };
        inputs.push(InputTensor {
            name: i.name,
            datatype: i.datatype,
            shape: i.shape,
            data,
        });
    }
    let mut outputs = vec![];
    for o in r.outputs {
        outputs.push(Requested {
            classification: classification(&o.name, &o.parameters)?,
            name: o.name,
            binary: None,
        });
    }
    Ok(InferRequest {
        id: Some(r.id).filter(|s| !s.is_empty()),
        inputs,
        outputs,
    })
}

#[tonic::async_trait]
impl GrpcInferenceService for Service {
    async fn server_live(
        &self,
        _: Request<pb::ServerLiveRequest>,
    ) -> Result<Response<pb::ServerLiveResponse>, Status> {
        Ok(Response::new(pb::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<pb::ServerReadyRequest>,
    ) -> Result<Response<pb::ServerReadyResponse>, Status> {
        Ok(Response::new(pb::ServerReadyResponse {
            ready: self.state.ready(),
        }))
    }

    async fn model_ready(
        &self,
        r: Request<pb::ModelReadyRequest>,
    ) -> Result<Response<pb::ModelReadyResponse>, Status> {
        let r = r.into_inner();
        self.state.model(&r.name, Some(&r.version))?;
        Ok(Response::new(pb::ModelReadyResponse {
            ready: self.state.ready(),
        }))
    }

    async fn server_metadata(
        &self,
        _: Request<pb::ServerMetadataRequest>,
    ) -> Result<Response<pb::ServerMetadataResponse>, Status> {
        Ok(Response::new(pb::ServerMetadataResponse {
            name: "effc".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: crate::http::EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }))
    }

    async fn model_metadata(
        &self,
        r: Request<pb::ModelMetadataRequest>,
    ) -> Result<Response<pb::ModelMetadataResponse>, Status> {
        let r = r.into_inner();
        let m = self.state.model(&r.name, Some(&r.version))?;
        let [c, h, w] = m.model.input;
        Ok(Response::new(pb::ModelMetadataResponse {
            name: m.name.clone(),
            versions: vec![m.version.clone()],
            platform: "effc".into(),
            inputs: vec![tensor_metadata(
                protocol::INPUT,
                [-1, c as i64, h as i64, w as i64],
            )],
            outputs: m
                .outputs
                .iter()
                .map(|o| {
                    tensor_metadata(
                        &o.name,
                        std::iter::once(-1).chain(o.shape.iter().map(|&d| d as i64)),
                    )
                })
                .collect(),
        }))
    }

    async fn model_infer(
        &self,
        r: Request<pb::ModelInferRequest>,
    ) -> Result<Response<pb::ModelInferResponse>, Status> {
        let start = Instant::now();
        let r = r.into_inner();
        let (name, version) = (r.model_name.clone(), r.model_version.clone());
        let result = async {
            self.state.model(&name, Some(&version))?;
            let _held = self
                .state
                .hold(&name, prost::Message::encoded_len(&r) as u64)?;
            let req = match request(r) {
                Ok(req) => req,
                Err(e) => {
                    self.state.metrics.request(&name);
                    self.state.metrics.failure(&name, e.reason());
                    return Err(e);
                }
            };
            let id = req.id.clone();
            let (served, rows, outputs) = self.state.infer(&name, Some(&version), req).await?;
            let mut response = pb::ModelInferResponse {
                model_name: served.name.clone(),
                model_version: served.version.clone(),
                id: id.clone().unwrap_or_default(),
                ..Default::default()
            };
            for o in outputs {
                response.raw_output_contents.push(o.raw());
                response
                    .outputs
                    .push(pb::model_infer_response::InferOutputTensor {
                        name: o.name.clone(),
                        datatype: o.datatype().into(),
                        shape: o.shape.clone(),
                        ..Default::default()
                    });
            }
            Ok::<_, ApiError>((response, rows, id))
        }
        .await;
        let (status, rows, id, error) = match &result {
            Ok((_, rows, id)) => (0, Some(*rows), id.clone(), None),
            Err(e) => (
                Status::from(e.clone()).code() as u16,
                None,
                None,
                Some(e.message.clone()),
            ),
        };
        self.state.log(&LogLine {
            protocol: "grpc",
            method: "ModelInfer",
            path: "inference.GRPCInferenceService/ModelInfer",
            status,
            seconds: start.elapsed().as_secs_f64(),
            model: Some(&name),
            rows,
            id: id.as_deref(),
            error: error.as_deref(),
        });
        Ok(Response::new(result?.0))
    }
}

/// Serves gRPC on `listener` until `stop` turns true, then drains.
pub async fn serve(
    listener: std::net::TcpListener,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), Error> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let limits = state.limits;
    let service = GrpcInferenceServiceServer::new(Service { state })
        .max_decoding_message_size(limits.max_body)
        .max_encoding_message_size(usize::MAX);
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .concurrency_limit_per_connection(256)
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            limits.max_connections,
        ))
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(60)))
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop.changed().await;
        })
        .await
        .map_err(|e| Error::Io(std::io::Error::other(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};

    fn input(datatype: &str, contents: Option<pb::InferTensorContents>) -> InferInputTensor {
        InferInputTensor {
            name: "input".into(),
            datatype: datatype.into(),
            shape: vec![2],
            parameters: HashMap::new(),
            contents,
        }
    }

    #[test]
    fn raw_and_typed_contents_become_the_protocols_tensors() {
        let mut raw = vec![];
        for e in [b"ab".as_slice(), b"c"] {
            raw.extend((e.len() as u32).to_le_bytes());
            raw.extend(e);
        }
        let k = pb::InferParameter {
            parameter_choice: Some(ParameterChoice::Int64Param(3)),
        };
        let r = request(pb::ModelInferRequest {
            id: "x".into(),
            inputs: vec![input("BYTES", None)],
            raw_input_contents: vec![raw],
            outputs: vec![InferRequestedOutputTensor {
                name: "logits".into(),
                parameters: HashMap::from([("classification".to_string(), k)]),
            }],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("x"));
        assert_eq!(
            r.inputs[0].data,
            Data::Elements(vec![b"ab".to_vec(), b"c".to_vec()])
        );
        assert_eq!(r.outputs[0].classification, Some(3));
        let typed = pb::InferTensorContents {
            fp32_contents: vec![0.5, -1.0],
            ..Default::default()
        };
        let r = request(pb::ModelInferRequest {
            inputs: vec![input("FP32", Some(typed))],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(r.id, None);
        assert_eq!(r.inputs[0].data, Data::Numbers(vec![0.5, -1.0]));
    }

    #[test]
    fn contents_given_twice_or_not_at_all_are_invalid() {
        let both = request(pb::ModelInferRequest {
            inputs: vec![input("FP32", Some(Default::default()))],
            raw_input_contents: vec![vec![0; 8]],
            ..Default::default()
        })
        .unwrap_err();
        assert!(both
            .message
            .contains("both contents and raw_input_contents"));
        let none = request(pb::ModelInferRequest {
            inputs: vec![input("FP32", None)],
            ..Default::default()
        })
        .unwrap_err();
        assert!(none.message.contains("has no contents"));
        let counts = request(pb::ModelInferRequest {
            inputs: vec![input("FP32", None), input("FP32", None)],
            raw_input_contents: vec![vec![]],
            ..Default::default()
        })
        .unwrap_err();
        assert!(counts.message.contains("1 entries for 2 inputs"));
        assert_eq!(Status::from(counts).code(), Code::InvalidArgument);
    }
}
