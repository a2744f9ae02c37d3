// The SDXL and FLUX templates. Each is a row of stages (left → right), one group per stage, nodes stacked in
// their stage; positions come from the frontend's own node sizes, so nodes never overlap (tests/browser checks
// the rectangles). The first stage holds a Note saying what to change.
// Node: { id, type, w: {widget: value}, title }; link: [from id, output slot, to id, input name].

const NEG = "blurry, low quality";
const DOG = "a photo of a dog";
const CLIP_VISION = "clip_vision_vit_l14.safetensors";
const SDXL = "sd_xl_base_1.0.safetensors";
const FLUX = { unet: "flux1-dev.safetensors", clip_l: "clip_l.safetensors", t5: "t5xxl_fp8_e4m3fn.safetensors",
  vae: "ae.safetensors" };
const fixed = { control_after_generate: "fixed" };

const note = (text) => ({ id: "note", type: "Note", w: { text }, title: "What to change" });
const text = (id, t, title) => ({ id, type: "CLIPTextEncode", w: { text: t }, title });
const cv = () => ({ id: "cv", type: "CLIPVisionLoader", w: { clip_name: CLIP_VISION } });

// SDXL: one checkpoint gives MODEL / CLIP / VAE.
const sdxlLoad = (extra = []) => ({ title: "1. Load", nodes: [
  { id: "ckpt", type: "CheckpointLoaderSimple", w: { ckpt_name: SDXL } }, ...extra] });
const sdxl = { model: ["ckpt", 0], clip: ["ckpt", 1], vae: ["ckpt", 2] };
// FLUX: diffusion model, the two text encoders and the VAE come from their own loaders.
const fluxLoad = (extra = []) => ({ title: "1. Load", nodes: [
  { id: "unet", type: "UNETLoader", w: { unet_name: FLUX.unet, weight_dtype: "fp8_e4m3fn" } },
  { id: "dual", type: "DualCLIPLoader", w: { clip_name1: FLUX.clip_l, clip_name2: FLUX.t5, type: "flux" } },
  { id: "vaeload", type: "VAELoader", w: { vae_name: FLUX.vae } }, ...extra] });
const flux = { model: ["unet", 0], clip: ["dual", 0], vae: ["vaeload", 0] };

const wire = (src, to, names) => names.map((n) => [...src[n], to, n]);

/** Discover: trajectories → embed → PCA → train → save, and a Slider Grid of the new sliders at the end. */
function discover(fam, S, { size, steps, cfg, scheduler, guidance, noteText }) {
  const prompt = guidance
    ? [text("pos_text", DOG, "Prompt (type the concept here)"), { id: "pos", type: "FluxGuidance", w: { guidance } },
      text("neg", "", "Negative (unused at cfg 1)")]
    : [text("pos", DOG, "Prompt (type the concept here)"), text("neg", NEG, "Negative")];
  const sampling = { steps, cfg, scheduler, width: size, height: size };
  return {
    stages: [
      (fam === "flux" ? fluxLoad : sdxlLoad)([cv(), note(noteText)]),
      { title: "2. Prompt", nodes: prompt },
      { title: "3. Sample trajectories", nodes: [{ id: "traj", type: "SliderSpaceTrajectorySampler",
        w: { prompts: DOG, negative: "", trajectories: 200, seed: 0, ...fixed, ...sampling, batch_size: 2,
          keep_steps: "every k-th step", keep_every: 5 } }] },
      { title: "4. Embed and PCA", nodes: [
        { id: "embed", type: "SliderSpaceClipEmbed", w: { batch_size: 16 } },
        { id: "pca", type: "SliderSpacePCADecompose", w: { n_components: 32, ...fixed } },
        { id: "scree", type: "PreviewImage", title: "Scree plot" }] },
      { title: "5. Train sliders", nodes: [
        { id: "train", type: "SliderSpaceTrainSliders", w: { n_sliders: 8, iterations: 1000, ...fixed,
          gradient_checkpointing: true } },
        { id: "loss", type: "PreviewImage", title: "Loss curve" },
        { id: "save", type: "SliderSpaceSaveSliderBank", w: { filename_prefix: `sliderspace_${fam}` } }] },
      { title: "6. Slider Grid", nodes: [
        { id: "grid", type: "SliderSpaceSliderGrid", w: { sliders: "0-3", scales: "-2, -1, 0, 1, 2", seed: 0, ...fixed,
          ...sampling, start_percent: 0.2 } },
        { id: "out", type: "SaveImage", w: { filename_prefix: `sliderspace_${fam}_grid` } }] },
    ],
    links: [
      ...(guidance ? [[...S.clip, "pos_text", "clip"], ["pos_text", 0, "pos", "conditioning"]] : [[...S.clip, "pos", "clip"]]),
      [...S.clip, "neg", "clip"],
      ...wire(S, "traj", ["model", "clip"]), ["pos", 0, "traj", "conditioning"], ["neg", 0, "traj", "negative_conditioning"],
      ["traj", 0, "embed", "trajectories"], ...wire(S, "embed", ["vae"]), ["cv", 0, "embed", "clip_vision"],
      ["embed", 0, "pca", "embeddings"], ["pca", 1, "scree", "images"],
      ...wire(S, "train", ["model", "vae"]), ["cv", 0, "train", "clip_vision"], ["pos", 0, "train", "positive"],
      ["pca", 0, "train", "basis"], ["traj", 0, "train", "trajectories"], ["train", 1, "loss", "images"],
      ["train", 0, "save", "bank"],
      ...wire(S, "grid", ["model", "vae"]), ["train", 0, "grid", "bank"], ["pos", 0, "grid", "positive"],
      ["neg", 0, "grid", "negative"], ["grid", 0, "out", "images"]],
  };
}

/** Apply: a saved bank on the model, with the slider widget, beside the same seed without sliders. */
function apply(fam, S, { size, steps, cfg, scheduler, guidance, latent, noteText }) {
  const prompt = guidance
    ? [text("pos_text", DOG, "Prompt"), { id: "pos", type: "FluxGuidance", w: { guidance } },
      text("neg", "", "Negative (unused at cfg 1)")]
    : [text("pos", DOG, "Prompt"), text("neg", NEG, "Negative")];
  const ks = (id, title) => ({ id, type: "KSampler", w: { seed: 0, ...fixed, steps, cfg, scheduler }, title });
  return {
    stages: [
      (fam === "flux" ? fluxLoad : sdxlLoad)([note(noteText)]),
      { title: "2. Sliders", nodes: [
        { id: "bank", type: "SliderSpaceLoadSliderBank", w: { file: `sliderspace_${fam}_00001.safetensors` } },
        { id: "apply", type: "SliderSpaceApplySliderBank", w: { scales: "0:1.5", start_percent: 0.2 } }] },
      { title: "3. Prompt and latent", nodes: [...prompt,
        { id: "latent", type: latent, w: { width: size, height: size, batch_size: 1 } }] },
      { title: "4. Sample (sliders, plain)", nodes: [
        ks("ks", "KSampler (sliders)"), ks("ks_plain", "KSampler (plain)")] },
      { title: "5. Decode and save", nodes: [
        { id: "dec", type: "VAEDecode" }, { id: "out", type: "SaveImage", w: { filename_prefix: `sliderspace_${fam}_apply` } },
        { id: "dec_plain", type: "VAEDecode" },
        { id: "out_plain", type: "SaveImage", w: { filename_prefix: `sliderspace_${fam}_plain` } }] },
    ],
    links: [
      ...(guidance ? [[...S.clip, "pos_text", "clip"], ["pos_text", 0, "pos", "conditioning"]] : [[...S.clip, "pos", "clip"]]),
      [...S.clip, "neg", "clip"], [...S.model, "apply", "model"], ["bank", 0, "apply", "bank"],
      ["apply", 0, "ks", "model"], [...S.model, "ks_plain", "model"],
      ...["ks", "ks_plain"].flatMap((k) => [["pos", 0, k, "positive"], ["neg", 0, k, "negative"],
        ["latent", 0, k, "latent_image"]]),
      ["ks", 0, "dec", "samples"], [...S.vae, "dec", "vae"], ["dec", 0, "out", "images"],
      ["ks_plain", 0, "dec_plain", "samples"], [...S.vae, "dec_plain", "vae"], ["dec_plain", 0, "out_plain", "images"]],
  };
}

const SDXL_SET = { size: 1024, steps: 25, cfg: 6.0, scheduler: "normal" };
const FLUX_SET = { size: 1024, steps: 20, cfg: 1.0, scheduler: "simple", guidance: 3.5 };
const FILES_SDXL = `Files: ${SDXL} in models/checkpoints (any SDXL checkpoint), ${CLIP_VISION} in models/clip_vision ` +
  "(a CLIP ViT-L/14 vision model; the same file serves SD1.5, SDXL and FLUX).";
const FLUX_MODEL_FILES = `${FLUX.unet} in models/diffusion_models, ${FLUX.clip_l} and ${FLUX.t5} in ` +
  `models/text_encoders, ${FLUX.vae} in models/vae`;
const FILES_FLUX = `Files: ${FLUX_MODEL_FILES}, ${CLIP_VISION} in models/clip_vision.`;
const DISCOVER_NOTE = "Type your concept in the Prompt node (the Trajectory Sampler's `prompts` line is only the " +
  "label stored in the bank). Discovery cost ≈ trajectories × one KSampler run; raise `trajectories` (paper: " +
  "1000) once it works. Train Sliders: `n_sliders`, `iterations` (paper: 3000). The grid at the end shows " +
  "sliders 0-3 at scales -2 … +2; the bank is saved to models/sliderspace (press R to list it).";

export const FAMILY_WORKFLOWS = {
  sliderspace_discover_sdxl: discover("sdxl", sdxl, { ...SDXL_SET,
    noteText: `SliderSpace discovery on SDXL (1024 px).\n\n${FILES_SDXL}\n\n${DISCOVER_NOTE}\n\nTurbo / DMD2 / ` +
      "Lightning: steps 4, cfg 1, scheduler sgm_uniform." }),
  sliderspace_discover_flux: discover("flux", flux, { ...FLUX_SET,
    noteText: `SliderSpace discovery on FLUX-dev (1024 px, cfg 1; guidance 3.5 from FluxGuidance).\n\n${FILES_FLUX}` +
      `\n\n${DISCOVER_NOTE}\n\nFLUX-schnell: steps 4. Training on FLUX needs fp8 weights (weight_dtype) and ` +
      "gradient_checkpointing to fit 24 GB (estimated, not measured)." }),
  sliderspace_apply_sdxl: apply("sdxl", sdxl, { ...SDXL_SET, latent: "EmptyLatentImage",
    noteText: `Apply SliderSpace sliders on SDXL.\n\nFiles: ${SDXL} in models/checkpoints; the bank in models/sliderspace ` +
      "(made by the SDXL discover template).\n\nMove the sliders on Apply Slider Bank (or type index:scale in " +
      "`scales`); start_percent 0.2 keeps the composition. The bottom KSampler is the same seed without sliders." }),
  sliderspace_apply_flux: apply("flux", flux, { ...FLUX_SET, latent: "EmptySD3LatentImage",
    noteText: `Apply SliderSpace sliders on FLUX-dev (cfg 1, FluxGuidance 3.5).\n\nFiles: ${FLUX_MODEL_FILES}; ` +
      "the bank in models/sliderspace (made by the FLUX discover template).\n\nMove the sliders on Apply Slider " +
      "Bank; the bottom KSampler is the same seed without sliders. FLUX-schnell: steps 4." }),
};
export { CLIP_VISION, DOG, FLUX, NEG, SDXL, cv, fixed, note, sdxl, sdxlLoad, text };
